"""Small capture builders for the decode and flow tests: scapy for headers, struct for the files."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet

from meshpcap.decode.frames import Decoded, decode_batch
from tests.capture import writers as W

T0 = 1_700_000_000 * 1_000_000_000  # base timestamp of every built capture, integer ns
SEC = 1_000_000_000

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"

Pkt = Union[bytes, Packet]


def raw(p: Pkt) -> bytes:
    return bytes(p)


# ---------------------------------------------------------------- IP packets
def tcp4(src: str, sport: int, dst: str, dport: int, flags: str = "A", seq: int = 1000, ack: int = 0,
         payload: bytes = b"") -> bytes:
    return raw(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload)


def udp4(src: str, sport: int, dst: str, dport: int, payload: bytes = b"x") -> bytes:
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def tcp6(src: str, sport: int, dst: str, dport: int, flags: str = "A", seq: int = 1000, payload: bytes = b"") -> bytes:
    return raw(IPv6(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq) / payload)


def udp6(src: str, sport: int, dst: str, dport: int, payload: bytes = b"x") -> bytes:
    return raw(IPv6(src=src, dst=dst) / UDP(sport=sport, dport=dport) / payload)


def icmp4(src: str, dst: str, type_: int, code: int, quoted: bytes) -> bytes:
    return raw(IP(src=src, dst=dst) / ICMP(type=type_, code=code) / quoted)


# ---------------------------------------------------------------- link layers
def ethertype_of(ip: bytes) -> int:
    return 0x86DD if ip[0] >> 4 == 6 else 0x0800


def ether(ip: bytes, ethertype: int | None = None) -> bytes:
    """Ethernet II: dst, src, ethertype (IEEE 802.3 clause 3)."""
    et = ethertype_of(ip) if ethertype is None else ethertype
    return raw(Ether(dst=MAC_B, src=MAC_A, type=et)) + ip


def vlan(ip: bytes, vid: int = 100) -> bytes:
    """One 802.1Q tag."""
    return raw(Ether(dst=MAC_B, src=MAC_A) / Dot1Q(vlan=vid, type=ethertype_of(ip))) + ip


def qinq(ip: bytes, outer: int = 10, inner: int = 20) -> bytes:
    """802.1ad service tag (0x88a8) then an 802.1Q customer tag (0x8100)."""
    hdr = bytes.fromhex(MAC_B.replace(":", "") + MAC_A.replace(":", ""))
    hdr += struct.pack("!HH", 0x88A8, outer) + struct.pack("!HH", 0x8100, inner) + struct.pack("!H", ethertype_of(ip))
    return hdr + ip


def pppoe(ip: bytes, compressed: bool = False) -> bytes:
    """PPPoE session (RFC 2516 section 4) carrying PPP; ``compressed``: one-byte protocol field (RFC 1661 section 6.5)."""
    proto = 0x21 if ip[0] >> 4 == 4 else 0x57
    ppp = bytes([proto]) if compressed else struct.pack("!H", proto)
    body = ppp + ip
    hdr = struct.pack("!BBHH", 0x11, 0x00, 0x1234, len(body))
    return ether(hdr + body, 0x8864)


def sll(ip: bytes) -> bytes:
    """LINKTYPE_LINUX_SLL: packet type, ARPHRD, address length, 8-byte address, protocol."""
    return struct.pack("!HHH8sH", 0, 1, 6, bytes.fromhex("02000000000a") + b"\0\0", ethertype_of(ip)) + ip


def sll2(ip: bytes) -> bytes:
    """LINKTYPE_LINUX_SLL2: protocol, reserved, ifindex, ARPHRD, packet type, address length, 8-byte address."""
    return struct.pack("!HHIHBB8s", ethertype_of(ip), 0, 2, 1, 0, 6, bytes.fromhex("02000000000a") + b"\0\0") + ip


def null(ip: bytes, order: str = "<", af6: int = 24) -> bytes:
    """BSD null/loopback: a 4-byte address family in the writer's byte order."""
    af = 2 if ip[0] >> 4 == 4 else af6
    return struct.pack(order + "I", af) + ip


def loop(ip: bytes, af6: int = 24) -> bytes:
    """OpenBSD loop: the address family in network byte order."""
    return null(ip, ">", af6)


def ppp(ip: bytes, acf: bool = True, compressed: bool = False) -> bytes:
    """PPP in HDLC-like framing (RFC 1662 section 3.1) without the flag and FCS bytes."""
    proto = 0x21 if ip[0] >> 4 == 4 else 0x57
    pf = bytes([proto]) if compressed else struct.pack("!H", proto)
    return (b"\xff\x03" if acf else b"") + pf + ip


# ---------------------------------------------------------------- tunnels (outer headers around ``inner``)
def gre(inner: bytes, proto: int, outer_src: str = "192.0.2.1", outer_dst: str = "192.0.2.2", flags: int = 0,
        extra: bytes = b"") -> bytes:
    """Outer IPv4 + GRE (RFC 2784; RFC 2890 key/sequence words in ``extra``) + inner bytes."""
    g = struct.pack("!HH", flags, proto) + extra
    return raw(IP(src=outer_src, dst=outer_dst, proto=47) / (g + inner))


def erspan2(inner_frame: bytes, session: int = 7) -> bytes:
    """ERSPAN type II: GRE with sequence number (0x1000), protocol 0x88be, 8-byte ERSPAN header."""
    hdr = struct.pack("!HHI", 0x1000 | 100, session, 0)  # ver=1, vlan 100; session id; index
    return gre(hdr + inner_frame, 0x88BE, flags=0x1000, extra=struct.pack("!I", 42))


def erspan3(inner_frame: bytes, platform: bool = False) -> bytes:
    """ERSPAN type III: GRE with sequence number, protocol 0x22eb, 12-byte header (+8 with the O flag)."""
    hdr = struct.pack("!HHII", 0x2000 | 100, 7, 123456, 0x0000 | (1 if platform else 0))
    if platform:
        hdr += b"\0" * 8
    return gre(hdr + inner_frame, 0x22EB, flags=0x1000, extra=struct.pack("!I", 42))


def vxlan(inner_frame: bytes, vni: int = 5000, port: int = 4789) -> bytes:
    """Outer IPv4/UDP to 4789 + VXLAN header with the I flag (RFC 7348 section 5)."""
    hdr = struct.pack("!II", 0x08000000, vni << 8)
    return udp4("198.51.100.1", 54321, "198.51.100.2", port, hdr + inner_frame)


def geneve(inner: bytes, ptype: int = 0x6558, options: bytes = b"") -> bytes:
    """Outer IPv4/UDP to 6081 + Geneve header (RFC 8926 section 3.4)."""
    hdr = struct.pack("!BBHI", len(options) // 4, 0, ptype, 5000 << 8) + options
    return udp4("198.51.100.1", 54321, "198.51.100.2", 6081, hdr + inner)


# ---------------------------------------------------------------- files
def write_pcap(path: Path, packets: Iterable[tuple[int, Pkt]], linktype: int = 1, order: str = "<",
               snaplen: int = 65535) -> Path:
    """A nanosecond pcap; packets are (ns, bytes or scapy packet) or (ns, bytes, origlen)."""
    recs = []
    for p in packets:
        ns, data = p[0], raw(p[1])
        rec = (ns // SEC, ns % SEC, data) + tuple(p[2:])
        recs.append(rec)
    path.write_bytes(W.pcap(recs, order=order, nano=True, linktype=linktype, snaplen=snaplen))
    return path


def write_pcapng(path: Path, linktypes: Sequence[int], packets: Iterable[tuple[int, int, Pkt]]) -> Path:
    """A pcapng with one IDB per link type (nanosecond resolution); packets are (interface, ns, data)."""
    out = [W.shb()]
    out += [W.idb(linktype=lt, tsresol=9) for lt in linktypes]
    out += [W.epb(iface=i, ts=ns, data=raw(p)) for i, ns, p in packets]
    path.write_bytes(b"".join(out))
    return path


def ip_flow(src: str, sport: int, dst: str, dport: int, transport: str = "tcp", n: int = 1):
    """Build a list of simple packets of one direction (helper for the bulk captures)."""
    mk = tcp4 if transport == "tcp" else udp4
    return [mk(src, sport, dst, dport) for _ in range(n)]


def decode(frames: Sequence[Pkt], linktypes: Union[int, Sequence[int]] = 1) -> Decoded:
    """Run :func:`decode_batch` over frames laid end to end in one buffer (as a reader batch would)."""
    datas = [raw(f) for f in frames]
    if isinstance(linktypes, int):
        linktypes = [linktypes] * len(datas)
    lens = np.array([len(x) for x in datas], np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if datas else np.zeros(0, np.int64)
    return decode_batch(b"".join(datas), offs, lens, np.array(linktypes, np.int64))


def ipv4_int(addr: str) -> int:
    a, b, c, d = (int(x) for x in addr.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d
