"""Columnar decoding of whole batches: link layer, IPv4/IPv6, TCP/UDP/ICMP headers.

This is the hot path.  Nothing here loops over packets in Python: every field of a
batch is pulled with one numpy gather over the batch's bytes, and each layer narrows
a mask of packets that are still decodable.  A packet that cannot be decoded keeps
the reason code of the layer that rejected it (:data:`REASONS`), so the capture's
record count always equals decoded + undecoded.

Mirror-port encapsulations (GRE incl. ERSPAN I/II/III, VXLAN, Geneve) are peeled
off by re-running the decoder on the inner frame of just those packets.
"""

from __future__ import annotations


import numpy as np

from meshpcap._dataclass import dataclass
from meshpcap._native import load as _load_native

# Reason codes for undecoded packets; 0 means decoded.
OK = 0
REASONS: dict[int, str] = {
    1: "unknown link type",
    2: "truncated link header",
    3: "not IP (ARP)",
    4: "not IP (other ethertype)",
    5: "truncated IP header",
    6: "bad IP version",
    7: "bad IPv4 header length",
    8: "IPv6 extension header chain too long or truncated",
    9: "truncated TCP header",
    10: "truncated UDP header",
    11: "truncated ICMP header",
    12: "bad TCP header length",
    13: "fragment without its first fragment",
    14: "encapsulation nested too deep",
    15: "truncated tunnel header",
    16: "not IP (LLC or other non-IP frame)",
}
R_LINK, R_LINKHDR, R_ARP, R_ETHERTYPE, R_IPHDR, R_IPVER, R_IHL, R_V6EXT = 1, 2, 3, 4, 5, 6, 7, 8
R_TCPHDR, R_UDPHDR, R_ICMPHDR, R_TCPOFF, R_ORPHANFRAG, R_DEEP, R_TUNNEL, R_LLC = 9, 10, 11, 12, 13, 14, 15, 16

PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_GRE, PROTO_ICMPV6 = 1, 6, 17, 47, 58
ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
ETH_VLAN = (0x8100, 0x88A8, 0x9100, 0x9200)  # IEEE 802.1Q / 802.1ad (QinQ) and pre-standard QinQ tags
ETH_PPPOE_SESSION = 0x8864  # RFC 2516 section 4
ETH_MPLS = (0x8847, 0x8848)
ETH_TEB = 0x6558  # Transparent Ethernet Bridging (RFC 1701): Ethernet inside GRE
ETH_ERSPAN2, ETH_ERSPAN3 = 0x88BE, 0x22EB
VXLAN_PORTS = (4789, 8472)  # RFC 7348 section 5; 8472 is the Linux kernel's legacy default
GENEVE_PORT = 6081  # RFC 8926 section 3.3

# IPv6 extension headers that may precede the transport (RFC 8200 section 4.1)
V6_HOPOPT, V6_ROUTING, V6_FRAGMENT, V6_DSTOPTS, V6_AH, V6_MOBILITY = 0, 43, 44, 60, 51, 135

# link "kinds" used while decoding: where the next header is and what it is
K_ETHER, K_IP = 1, 2


ICMP4_ERRORS = (3, 4, 5, 11, 12)  # dest unreachable, source quench, redirect, time exceeded, parameter problem
ICMP6_ERRORS = (1, 2, 3, 4)  # RFC 4443 section 3: unreachable, packet too big, time exceeded, parameter problem


@dataclass(slots=True)
class Decoded:
    """Decoded header fields of one batch, one array element per packet."""

    reason: np.ndarray  # uint8, 0 = decoded
    ip_version: np.ndarray  # int8: 4 or 6
    proto: np.ndarray  # int16: IP protocol number
    src_hi: np.ndarray  # uint64: upper 64 bits of the source address (0 for IPv4)
    src_lo: np.ndarray  # uint64: lower 64 bits (IPv4: the address itself)
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    ip_len: np.ndarray  # int64: IP-layer bytes on the wire (IPv4 total length, IPv6 40 + payload length)
    ip_id: np.ndarray  # int64: IPv4 identification or IPv6 fragment identification
    frag_offset: np.ndarray  # int64: in bytes
    more_frags: np.ndarray  # bool
    sport: np.ndarray  # int32, -1 when the packet has no ports
    dport: np.ndarray
    tcp_flags: np.ndarray  # int16
    tcp_seq: np.ndarray  # int64
    tcp_ack: np.ndarray  # int64
    icmp_type: np.ndarray  # int16, -1 when not ICMP
    icmp_code: np.ndarray
    ttl: np.ndarray  # uint8: IPv4 TTL or IPv6 hop limit (who sent a packet: how many hops away)
    l4: np.ndarray  # int64: offset of the transport header in the batch data
    payload: np.ndarray  # int64: offset of the transport payload
    payload_len: np.ndarray  # int64: payload bytes on the wire (from the IP length)
    payload_cap: np.ndarray  # int64: payload bytes present in the capture
    encapsulated: np.ndarray  # bool: came out of a mirror-port tunnel


class _Gather:
    """Bounds-clipped big-endian field gathers over one batch's bytes."""

    __slots__ = ("buf", "lim", "w16", "w32")

    def __init__(self, data: bytes) -> None:
        self.buf = np.frombuffer(data, dtype=np.uint8)
        self.lim = max(len(self.buf) - 1, 0)
        # Views with a one-byte stride: element i is the big-endian word at byte i, so a
        # 16- or 32-bit field is one gather instead of two or four.
        n = len(self.buf)
        self.w16 = np.ndarray((n - 1,), np.dtype(">u2"), data, 0, (1,)) if n >= 2 else None
        self.w32 = np.ndarray((n - 3,), np.dtype(">u4"), data, 0, (1,)) if n >= 4 else None

    def _inside(self, pos: np.ndarray, width: int) -> bool:
        """Every position reads a whole field inside the buffer (no clipping needed)."""
        return pos.size > 0 and int(pos.min()) >= 0 and int(pos.max()) <= len(self.buf) - width

    def u8(self, pos: np.ndarray) -> np.ndarray:
        if self.buf.size == 0:
            return np.zeros(len(pos), dtype=np.int64)
        if self._inside(pos, 1):
            return self.buf[pos].astype(np.int64)
        return self.buf[np.clip(pos, 0, self.lim)].astype(np.int64)

    def u16(self, pos: np.ndarray) -> np.ndarray:
        if self.w16 is not None and self._inside(pos, 2):
            return self.w16[pos].astype(np.int64)
        return (self.u8(pos) << 8) | self.u8(pos + 1)

    def u32(self, pos: np.ndarray) -> np.ndarray:
        if self.w32 is not None and self._inside(pos, 4):
            return self.w32[pos].astype(np.int64)
        return (self.u16(pos) << 16) | self.u16(pos + 2)

    def u64(self, pos: np.ndarray) -> np.ndarray:
        hi = self.u32(pos).astype(np.uint64)
        lo = self.u32(pos + 4).astype(np.uint64)
        return (hi << np.uint64(32)) | lo


# The compiled twin of this module's common path (None: not built, or MESHPCAP_PURE_PYTHON=1),
# and the Decoded columns it fills, in the order _headers.c expects.
HEADERS_ABI = 2  # must equal HEADERS_ABI in _headers.c
HEADERS = _load_native("meshpcap.decode._headers", HEADERS_ABI)
_COMMON_COLUMNS = ("reason", "ip_version", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "ip_len", "ip_id", "sport",
                   "dport", "tcp_flags", "tcp_seq", "tcp_ack", "ttl", "l4", "payload", "payload_len", "payload_cap",
                   "frag_offset", "more_frags", "icmp_type", "icmp_code", "encapsulated")  # every column, _headers.c's order


def decode_batch(data: bytes, offset: np.ndarray, caplen: np.ndarray, linktype: np.ndarray) -> Decoded:
    """Decode every packet of a batch down to its transport header."""
    n = len(offset)
    g = _Gather(data)
    end = offset + caplen
    fast = HEADERS if n else None
    # the compiled helper writes every row (the rest as _undecoded starts them): the columns need no filling
    d = _undecoded(n) if fast is None else _unfilled(n)
    if n == 0:
        return d
    if fast is not None:  # the common packets, compiled (_headers.c); the rest go on below
        rest = np.empty(n, np.int64)
        k = fast.decode_common(data, np.ascontiguousarray(offset, np.int64), np.ascontiguousarray(caplen, np.int64),
                               np.ascontiguousarray(linktype, np.int32), tuple(getattr(d, c) for c in _COMMON_COLUMNS),
                               rest)
        if k == 0:
            return d
        idx = rest[:k]
        l3, eth = _link(g, idx, offset[idx], end[idx], linktype[idx].astype(np.int64), d)
    else:
        idx = np.arange(n)
        l3, eth = _link(g, idx, offset, end, linktype.astype(np.int64), d)
    _network_and_tunnels(g, idx, l3, eth, end, d)
    return d


def _unfilled(n: int) -> Decoded:
    """The columns of _undecoded, of the same dtypes, not filled (``_headers.c`` decode_common fills them)."""
    return Decoded(**{name: np.empty(n, dtype) for name, dtype in _COLUMN_DTYPES})


def _undecoded(n: int) -> Decoded:
    """The columns for ``n`` packets before decoding: no reason yet (OK), no ports (-1), no protocol (-1)."""
    return Decoded(
        reason=np.zeros(n, np.uint8),
        ip_version=np.zeros(n, np.int8),
        proto=np.full(n, -1, np.int16),
        src_hi=np.zeros(n, np.uint64),
        src_lo=np.zeros(n, np.uint64),
        dst_hi=np.zeros(n, np.uint64),
        dst_lo=np.zeros(n, np.uint64),
        ip_len=np.zeros(n, np.int64),
        ip_id=np.zeros(n, np.int64),
        frag_offset=np.zeros(n, np.int64),
        more_frags=np.zeros(n, bool),
        sport=np.full(n, -1, np.int32),
        dport=np.full(n, -1, np.int32),
        tcp_flags=np.zeros(n, np.int16),
        tcp_seq=np.zeros(n, np.int64),
        tcp_ack=np.zeros(n, np.int64),
        icmp_type=np.full(n, -1, np.int16),
        icmp_code=np.full(n, -1, np.int16),
        ttl=np.zeros(n, np.uint8),
        l4=np.zeros(n, np.int64),
        payload=np.zeros(n, np.int64),
        payload_len=np.zeros(n, np.int64),
        payload_cap=np.zeros(n, np.int64),
        encapsulated=np.zeros(n, bool),
    )


_COLUMN_DTYPES = tuple((name, getattr(_undecoded(0), name).dtype) for name in _COMMON_COLUMNS)
assert sorted(_COMMON_COLUMNS) == sorted(Decoded.__slots__), "_COMMON_COLUMNS: every column of Decoded"


def _network_and_tunnels(g: _Gather, idx, l3, eth, end, d: Decoded) -> None:
    """Decode the network and transport headers of packets ``idx`` (network header at ``l3``, EtherType
    ``eth``), then of the frames tunnelled inside them, peeling at most 3 levels of tunnels."""
    for depth in range(4):
        inner_idx, inner_start, inner_kind = _network(g, idx, l3, eth, end, d)
        if inner_idx.size == 0:
            break
        if depth == 3:
            d.reason[inner_idx] = R_DEEP
            break
        d.encapsulated[inner_idx] = True
        # the inner frame replaces the outer headers
        for arr, v in ((d.sport, -1), (d.dport, -1), (d.tcp_flags, 0), (d.icmp_type, -1), (d.icmp_code, -1),
                       (d.frag_offset, 0), (d.more_frags, False), (d.src_hi, 0), (d.dst_hi, 0), (d.ip_id, 0)):
            arr[inner_idx] = v
        idx = inner_idx
        is_eth = inner_kind == K_ETHER
        l3 = np.empty(idx.size, np.int64)
        eth = np.empty(idx.size, np.int64)
        if is_eth.any():
            sub = idx[is_eth]
            sl3, seth = _ethernet(g, sub, inner_start[is_eth], end[sub], d)
            l3[is_eth] = sl3
            eth[is_eth] = seth
        ip = ~is_eth
        if ip.any():
            start = inner_start[ip]
            ver = g.u8(start) >> 4
            l3[ip] = start
            eth[ip] = np.where(ver == 6, ETH_IPV6, ETH_IPV4)
        keep = d.reason[idx] == OK
        idx, l3, eth = idx[keep], l3[keep], eth[keep]


def _link(g: _Gather, idx, offset, end, lt, d: Decoded):
    """Find the network header of each packet from its link type."""
    l3 = np.zeros(idx.size, np.int64)
    eth = np.zeros(idx.size, np.int64)
    known = np.zeros(idx.size, bool)

    m = lt == 1  # LINKTYPE_ETHERNET
    if m.any():
        sl3, seth = _ethernet(g, idx[m], offset[m], end[m], d)
        l3[m], eth[m] = sl3, seth
        known |= m

    m = lt == 113  # LINKTYPE_LINUX_SLL: 16-byte header, protocol at offset 14
    if m.any():
        short = offset[m] + 16 > end[m]
        l3[m] = offset[m] + 16
        eth[m] = g.u16(offset[m] + 14)
        d.reason[idx[m][short]] = R_LINKHDR
        known |= m

    m = lt == 276  # LINKTYPE_LINUX_SLL2: 20-byte header, protocol first
    if m.any():
        short = offset[m] + 20 > end[m]
        l3[m] = offset[m] + 20
        eth[m] = g.u16(offset[m])
        d.reason[idx[m][short]] = R_LINKHDR
        known |= m

    m = (lt == 101) | (lt == 12) | (lt == 14) | (lt == 228) | (lt == 229)  # raw IP
    if m.any():
        ver = g.u8(offset[m]) >> 4
        l3[m] = offset[m]
        e = np.where(ver == 6, ETH_IPV6, np.where(ver == 4, ETH_IPV4, -1))
        e = np.where(lt[m] == 228, ETH_IPV4, np.where(lt[m] == 229, ETH_IPV6, e))
        eth[m] = e
        d.reason[idx[m][(offset[m] + 1 > end[m]) | (e < 0)]] = R_IPVER
        known |= m

    m = (lt == 9) | (lt == 50) | (lt == 204)  # PPP, PPP in HDLC framing, PPP from pppd (RFC 1662 section 3.1)
    if m.any():
        acf = g.u16(offset[m]) == 0xFF03  # address and control fields, unless compressed away (ACFC)
        start = offset[m] + np.where(acf, 2, 0)
        e, hl = _ppp_protocol(g, start)
        l3[m] = start + hl
        eth[m] = e
        d.reason[idx[m][start + hl > end[m]]] = R_LINKHDR
        known |= m

    m = (lt == 0) | (lt == 108)  # BSD null (host byte order) / OpenBSD loop (network byte order)
    if m.any():
        fam_be = g.u32(offset[m])
        fam_le = ((fam_be & 0xFF) << 24) | ((fam_be & 0xFF00) << 8) | ((fam_be >> 8) & 0xFF00) | (fam_be >> 24)
        fam = np.where((lt[m] == 0) & (fam_be > 0xFFFF), fam_le, fam_be)
        l3[m] = offset[m] + 4
        e = np.where(fam == 2, ETH_IPV4, np.where(np.isin(fam, (10, 24, 28, 30)), ETH_IPV6, -2))
        # some writers put an ethertype in the low 16 bits instead of an address family
        low = fam_be & 0xFFFF
        e = np.where((e == -2) & ((low == ETH_IPV4) | (low == ETH_IPV6)), low, e)
        eth[m] = e
        d.reason[idx[m][offset[m] + 4 > end[m]]] = R_LINKHDR
        known |= m

    d.reason[idx[~known]] = R_LINK
    return l3, eth


def _ethernet(g: _Gather, idx, start, end, d: Decoded):
    """Ethernet II with 802.1Q/QinQ tags, PPPoE sessions and MPLS label stacks."""
    eth = g.u16(start + 12)
    l3 = start + 14
    for _ in range(4):  # up to four stacked VLAN tags
        tagged = np.isin(eth, ETH_VLAN)
        if not tagged.any():
            break
        eth = np.where(tagged, g.u16(l3 + 2), eth)
        l3 = np.where(tagged, l3 + 4, l3)
    pppoe = eth == ETH_PPPOE_SESSION
    if pppoe.any():  # RFC 2516 section 4: 6-byte PPPoE header, then the PPP protocol field
        e, hl = _ppp_protocol(g, l3 + 6)
        eth = np.where(pppoe, e, eth)
        l3 = np.where(pppoe, l3 + 6 + hl, l3)
    mpls = np.isin(eth, ETH_MPLS)
    if mpls.any():
        for _ in range(8):  # RFC 3032: pop labels until bottom of stack
            bos = (g.u8(l3 + 2) & 1) == 1
            l3 = np.where(mpls, l3 + 4, l3)
            mpls &= ~bos
            if not mpls.any():
                break
        was = np.isin(eth, ETH_MPLS)
        ver = g.u8(l3) >> 4
        eth = np.where(was, np.where(ver == 4, ETH_IPV4, np.where(ver == 6, ETH_IPV6, -3)), eth)
    llc = eth < 0x0600  # 802.3 length field: LLC/SNAP frames (STP, CDP ...)
    eth = np.where(llc & (eth >= 0), -4, eth)
    d.reason[idx[l3 > end]] = R_LINKHDR
    return l3, eth


def _ppp_protocol(g: _Gather, pos):
    """PPP protocol field at ``pos`` -> (ethertype-like code, header bytes).

    RFC 1661 section 6.5: with Protocol-Field-Compression the field is one byte (odd value)."""
    b = g.u8(pos)
    short = (b & 1) == 1
    proto = np.where(short, b, g.u16(pos))
    code = np.where(proto == 0x0021, ETH_IPV4, np.where(proto == 0x0057, ETH_IPV6, -3))
    return code, np.where(short, 1, 2)


def _network(g: _Gather, idx, l3, eth, end, d: Decoded):
    """IPv4/IPv6 and transport headers; returns packets that carry an inner tunnelled frame."""
    e_end = end[idx]
    live = d.reason[idx] == OK
    d.reason[idx[live & (eth == ETH_ARP)]] = R_ARP
    d.reason[idx[live & (eth == -4)]] = R_LLC
    other = live & (eth != ETH_IPV4) & (eth != ETH_IPV6) & (eth != ETH_ARP) & (eth != -4)
    d.reason[idx[other]] = R_ETHERTYPE
    empty = np.empty(0, np.int64)
    inner = ([empty], [empty], [empty])  # tunnelled frames found: packet indices, where they start, their kind
    m = live & (eth == ETH_IPV4)
    if m.any():
        _ipv4(g, idx[m], l3[m], e_end[m], d, inner)
    m = live & (eth == ETH_IPV6)
    if m.any():
        _ipv6(g, idx[m], l3[m], e_end[m], d, inner)
    return tuple(np.concatenate(part) for part in inner)


def _ipv4(g: _Gather, i, s, e, d: Decoded, inner) -> None:
    """IPv4 headers (RFC 791 section 3.1) at ``s`` of packets ``i`` captured up to ``e``, then their transport."""
    ok = s + 20 <= e
    d.reason[i[~ok]] = R_IPHDR
    i, s, e = i[ok], s[ok], e[ok]
    b0 = g.u8(s)
    ver_ok = (b0 >> 4) == 4
    d.reason[i[~ver_ok]] = R_IPVER
    ihl = (b0 & 0x0F) * 4
    ihl_ok = ver_ok & (ihl >= 20) & (s + ihl <= e)
    d.reason[i[ver_ok & ~ihl_ok]] = R_IHL
    i, s, e, ihl = i[ihl_ok], s[ihl_ok], e[ihl_ok], ihl[ihl_ok]
    total = g.u16(s + 2)
    captured = e - s
    total = np.where(total == 0, captured, total)  # TCP segmentation offload writes 0
    total = np.maximum(total, ihl)
    d.ip_version[i] = 4
    d.ip_len[i] = total
    d.ip_id[i] = g.u16(s + 4)
    ff = g.u16(s + 6)
    d.more_frags[i] = (ff & 0x2000) != 0
    d.frag_offset[i] = (ff & 0x1FFF) * 8
    d.proto[i] = g.u8(s + 9)
    d.ttl[i] = g.u8(s + 8)
    d.src_lo[i] = g.u32(s + 12).astype(np.uint64)
    d.dst_lo[i] = g.u32(s + 16).astype(np.uint64)
    ip_end = np.minimum(s + total, e)
    _transport(g, i, s + ihl, s + total, ip_end, d, inner)


_V6_EXTENSIONS = (V6_HOPOPT, V6_ROUTING, V6_FRAGMENT, V6_DSTOPTS, V6_AH, V6_MOBILITY)


def _ipv6(g: _Gather, i, s, e, d: Decoded, inner) -> None:
    """IPv6 headers (RFC 8200 section 3) and their extension header chains, then their transport."""
    ok = s + 40 <= e
    d.reason[i[~ok]] = R_IPHDR
    i, s, e = i[ok], s[ok], e[ok]
    ver_ok = (g.u8(s) >> 4) == 6
    d.reason[i[~ver_ok]] = R_IPVER
    i, s, e = i[ver_ok], s[ver_ok], e[ver_ok]
    plen = g.u16(s + 4)
    plen = np.where(plen == 0, e - s - 40, plen)  # jumbogram or offload: trust the capture
    d.ttl[i] = g.u8(s + 7)
    d.ip_version[i] = 6
    d.ip_len[i] = 40 + plen
    d.src_hi[i] = g.u64(s + 8)
    d.src_lo[i] = g.u64(s + 16)
    d.dst_hi[i] = g.u64(s + 24)
    d.dst_lo[i] = g.u64(s + 32)
    nh, pos = _ipv6_extensions(g, i, g.u8(s + 6), s + 40, d)
    bad = np.isin(nh, _V6_EXTENSIONS) | (pos > e)
    later_frag = d.frag_offset[i] > 0
    bad &= ~later_frag  # a later fragment carries no transport header; its chain may end anywhere
    d.reason[i[bad]] = R_V6EXT
    keep = ~bad
    d.proto[i] = nh
    i, s, e, pos, plen = i[keep], s[keep], e[keep], pos[keep], plen[keep]
    ip_end = np.minimum(s + 40 + plen, e)
    _transport(g, i, pos, s + 40 + plen, ip_end, d, inner)


def _ipv6_extensions(g: _Gather, i, nh, pos, d: Decoded):
    """Walk up to 8 extension headers (RFC 8200 section 4.1), noting fragment headers (section 4.5);
    returns the next header value and offset after the chain."""
    for _ in range(8):
        ext = np.isin(nh, _V6_EXTENSIONS)
        if not ext.any():
            break
        frag = ext & (nh == V6_FRAGMENT)
        if frag.any():
            fo = g.u16(pos + 2)
            d.frag_offset[i[frag]] = (fo & 0xFFF8)[frag]
            d.more_frags[i[frag]] = ((fo & 1) == 1)[frag]
            d.ip_id[i[frag]] = g.u32(pos + 4)[frag]
        hlen = np.where(nh == V6_FRAGMENT, 8, np.where(nh == V6_AH, (g.u8(pos + 1) + 2) * 4, (g.u8(pos + 1) + 1) * 8))
        nxt = g.u8(pos)
        nh = np.where(ext, nxt, nh)
        pos = np.where(ext, pos + hlen, pos)
    return nh, pos


def _transport(g: _Gather, i, l4, wire_end, cap_end, d: Decoded, inner) -> None:
    """TCP, UDP, ICMP and GRE headers of packets that are not later fragments; tunnelled frames go to ``inner``."""
    d.l4[i] = l4
    first = d.frag_offset[i] == 0
    proto = d.proto[i].astype(np.int64)
    m = first & (proto == PROTO_TCP)
    if m.any():
        _tcp(g, i[m], l4[m], wire_end[m], cap_end[m], d)
    m = first & (proto == PROTO_UDP)
    if m.any():
        _udp(g, i[m], l4[m], wire_end[m], cap_end[m], d, inner)
    m = first & ((proto == PROTO_ICMP) | (proto == PROTO_ICMPV6))
    if m.any():
        _icmp(g, i[m], l4[m], wire_end[m], cap_end[m], d)
    m = first & (proto == PROTO_GRE)
    if m.any():
        _gre(g, i[m], l4[m], cap_end[m], d, inner)


def _add_inner(inner, idx, start, kind: int) -> None:
    inner[0].append(idx)
    inner[1].append(start)
    inner[2].append(np.full(idx.size, kind, np.int64))


def _tcp(g: _Gather, t, s, we, ce, d: Decoded) -> None:
    """TCP headers (RFC 9293 section 3.1) at ``s``; ``we``/``ce``: where the segment ends on the wire / in the capture."""
    ok = s + 14 <= ce
    d.reason[t[~ok]] = R_TCPHDR
    t, s, we, ce = t[ok], s[ok], we[ok], ce[ok]
    d.sport[t] = g.u16(s)
    d.dport[t] = g.u16(s + 2)
    d.tcp_seq[t] = g.u32(s + 4)
    d.tcp_ack[t] = g.u32(s + 8)
    doff = (g.u8(s + 12) >> 4) * 4
    d.tcp_flags[t] = ((g.u8(s + 12) & 1) << 8) | g.u8(s + 13)
    # a header cut by snaplen still gives ports and flags, so the packet counts for its flow
    bad = (doff < 20) | (s + doff > we)
    d.reason[t[bad]] = R_TCPOFF
    pay = s + doff
    d.payload[t] = pay
    d.payload_len[t] = np.maximum(we - pay, 0)
    d.payload_cap[t] = np.maximum(ce - pay, 0)


def _udp(g: _Gather, u, s, we, ce, d: Decoded, inner) -> None:
    """UDP headers (RFC 768), and the Ethernet or IP frames VXLAN (RFC 7348) and Geneve (RFC 8926) carry."""
    ok = s + 4 <= ce
    d.reason[u[~ok]] = R_UDPHDR
    u, s, we, ce = u[ok], s[ok], we[ok], ce[ok]
    sp, dp = g.u16(s), g.u16(s + 2)
    d.sport[u] = sp
    d.dport[u] = dp
    pay = s + 8
    d.payload[u] = pay
    d.payload_len[u] = np.maximum(we - pay, 0)
    d.payload_cap[u] = np.maximum(ce - pay, 0)
    vx = np.isin(dp, VXLAN_PORTS) & ((g.u8(pay) & 0x08) != 0) & (pay + 8 + 14 <= ce) & (~d.more_frags[u])
    if vx.any():
        _add_inner(inner, u[vx], pay[vx] + 8, K_ETHER)
    gv = (dp == GENEVE_PORT) & (pay + 8 <= ce) & (~d.more_frags[u])
    if gv.any():
        optlen = (g.u8(pay) & 0x3F) * 4
        ptype = g.u16(pay + 2)
        start = pay + 8 + optlen
        teb = gv & (ptype == ETH_TEB) & (start + 14 <= ce)
        ip = gv & np.isin(ptype, (ETH_IPV4, ETH_IPV6)) & (start + 20 <= ce)
        for sel, kind in ((teb, K_ETHER), (ip, K_IP)):
            if sel.any():
                _add_inner(inner, u[sel], start[sel], kind)


def _icmp(g: _Gather, c, s, we, ce, d: Decoded) -> None:
    """ICMP (RFC 792) and ICMPv6 (RFC 4443) type and code; the payload starts after the 8-byte header."""
    ok = s + 4 <= ce
    d.reason[c[~ok]] = R_ICMPHDR
    c, s, ce, we = c[ok], s[ok], ce[ok], we[ok]
    d.icmp_type[c] = g.u8(s)
    d.icmp_code[c] = g.u8(s + 1)
    d.payload[c] = s + 8
    d.payload_len[c] = np.maximum(we - s - 8, 0)
    d.payload_cap[c] = np.maximum(ce - s - 8, 0)


def _gre(g: _Gather, r, s, ce, d: Decoded, inner) -> None:
    """GRE (RFC 2784 / RFC 2890) and ERSPAN II/III (draft-foschiano-erspan): the frames they carry."""
    flags = g.u16(s)
    ptype = g.u16(s + 2)
    hlen = 4 + np.where(flags & 0x8000, 4, 0) + np.where(flags & 0x2000, 4, 0) + np.where(flags & 0x1000, 4, 0)
    start = s + hlen
    seq_present = (flags & 0x1000) != 0
    # ERSPAN type II has an 8-byte header (GRE sequence present); type I has none
    start = np.where((ptype == ETH_ERSPAN2) & seq_present, start + 8, start)
    e3 = ptype == ETH_ERSPAN3
    if e3.any():
        o_flag = (g.u8(start + 11) & 1) == 1  # optional platform-specific subheader
        start = np.where(e3, start + 12 + np.where(o_flag, 8, 0), start)
    ether = np.isin(ptype, (ETH_TEB, ETH_ERSPAN2, ETH_ERSPAN3)) & (start + 14 <= ce)
    ip = np.isin(ptype, (ETH_IPV4, ETH_IPV6)) & (start + 20 <= ce)
    # a GRE header, or the frame it says it carries, cut short: count it, not a GRE flow
    cut = (s + 4 > ce) | (np.isin(ptype, (ETH_TEB, ETH_ERSPAN2, ETH_ERSPAN3, ETH_IPV4, ETH_IPV6)) & ~ether & ~ip)
    d.reason[r[cut]] = R_TUNNEL
    for sel, kind in ((ether, K_ETHER), (ip, K_IP)):
        if sel.any():
            _add_inner(inner, r[sel], start[sel], kind)
