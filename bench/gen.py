"""Write a large, deterministic, realistic synthetic pcap for benchmarks (struct templates, no scapy)."""

from __future__ import annotations

import argparse
import heapq
import math
import random
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Iterator

GEN_VERSION = 1  # bump when the output for a given (packets, seed) changes

START_S = int(datetime(2024, 6, 20, 14, 0, 0, tzinfo=timezone.utc).timestamp())
SPAN_US = 30 * 60 * 1_000_000  # the capture covers about 30 minutes
MSS = 1460

# pcap file format: classic little-endian, microsecond timestamps, LINKTYPE_ETHERNET.
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
REC = struct.Struct("<IIII")
IPV4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
UDP = struct.Struct("!HHHH")
ETH_IPV4 = b"\x08\x00"

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Windows-like SYN options: MSS 1460, NOP, WS 8, NOP, NOP, SACK permitted (RFC 9293 section 3.2).
SYN_OPTIONS = b"\x02\x04\x05\xb4\x01\x03\x03\x08\x01\x01\x04\x02"

STUN_MAGIC_COOKIE = 0x2112A442  # RFC 8489 section 5
STUN_FINGERPRINT_XOR = 0x5354554E  # RFC 8489 section 14.7
PUBLIC_NAT_ADDRESS = bytes([198, 51, 100, 7])  # what STUN reports back (TEST-NET-2)
RESOLVERS = (bytes([20, 0, 0, 53]), bytes([20, 0, 0, 54]))

GATEWAY_MAC = bytes.fromhex("00155d0a0001")

HOSTS = (
    # (host name, popularity weight); the weights make a few names dominate, as in real captures.
    ("teams.microsoft.com", 40), ("presence.teams.microsoft.com", 25), ("api.flightproxy.teams.microsoft.com", 12),
    ("teams.events.data.microsoft.com", 15), ("statics.teams.cdn.office.net", 20), ("login.microsoftonline.com", 30),
    ("graph.microsoft.com", 18), ("substrate.office.com", 10), ("outlook.office365.com", 8),
    ("mesh.cloud.microsoft.com", 22), ("meshservice.microsoft.com", 14), ("mlccdnprod.azureedge.net", 9),
    ("config.edge.skype.com", 11), ("api.mesh.microsoft.com", 16), ("js.monitor.azure.com", 6),
    ("browser.events.data.msn.com", 5), ("aka.ms", 3), ("www.microsoft.com", 7), ("learn.microsoft.com", 4),
    ("contoso.sharepoint.com", 6), ("euno-1.api.microsoftstream.com", 3), ("management.azure.com", 2),
    ("compass-ssl.microsoft.com", 3), ("join.secure.skypeassets.com", 2), ("ecs.office.com", 5),
    ("mobile.events.data.microsoft.com", 4), ("res.cdn.office.net", 6), ("officeclient.microsoft.com", 3),
    ("nexus.officeapps.live.com", 2), ("download.microsoft.com", 2), ("www.bing.com", 3),
    ("ocsp.digicert.com", 2), ("ctldl.windowsupdate.com", 2), ("settings-win.data.microsoft.com", 3),
    ("storage.contoso-mesh.azurewebsites.net", 2), ("unity3d.com", 1), ("www.google.com", 1),
    ("update.googleapis.com", 1),
)

CIPHER_SUITES = (0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
                 0x009C, 0x009D, 0x002F, 0x0035)
SIG_ALGS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601)
X25519, SECP256R1, SECP384R1, X25519MLKEM768 = 0x001D, 0x0017, 0x0018, 0x11EC


@dataclass(frozen=True, slots=True)
class Mix:
    """How many flows and packets of each kind one capture holds; the packets add up to the total."""

    tls_flows: int
    media_flows: int
    dns_pairs: int
    failed_syns: int
    rst_syns: int
    tls_packets: int
    media_packets: int

    @property
    def total(self) -> int:
        return self.tls_packets + self.media_packets + 2 * self.dns_pairs + 4 * self.failed_syns + 2 * self.rst_syns


def plan_mix(packets: int) -> Mix:
    """Scale the reference mix (1M packets) to `packets`; raise ValueError if that is too few."""
    s = packets / 1_000_000
    tls_flows = max(2, round(2000 * s))
    media_flows = max(1, round(500 * s))
    dns_pairs = max(2, round(2500 * s))
    failed = max(1, round(200 * s))
    rst = max(1, round(100 * s))
    rest = packets - 2 * dns_pairs - 4 * failed - 2 * rst
    media_packets = round(rest * 0.28)
    tls_packets = rest - media_packets
    if tls_packets < tls_flows * TLS_MAX_OVERHEAD + tls_flows or media_packets < media_flows * 3:
        raise ValueError(f"--packets {packets} is too small for the traffic mix (use at least 100)")
    return Mix(tls_flows, media_flows, dns_pairs, failed, rst, tls_packets, media_packets)


# -- checksums ---------------------------------------------------------------------------------------
# All IPv4, TCP and UDP checksums are computed. The ones' complement sum of 16-bit words (RFC 1071)
# equals the big-endian integer value mod 0xFFFF, because 2**16 == 1 (mod 0xFFFF), so int.from_bytes
# does the word loop in C.


def word_sum(data: bytes) -> int:
    """Ones' complement sum of `data` as big-endian 16-bit words (odd length padded), mod 0xFFFF."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    return value % 0xFFFF


def finish_checksum(total: int) -> int:
    """Checksum field for a running sum of non-zero data: its complement, 0 when the sum is 0xFFFF
    (RFC 1624 section 3); UDP must send 0 as 0xFFFF instead (RFC 768)."""
    return (0xFFFF - total % 0xFFFF) % 0xFFFF


@dataclass(slots=True)
class Route:
    """One direction of one flow: link and IP header templates plus the running IP identification."""

    eth: bytes
    src: bytes
    dst: bytes
    proto: int
    ttl: int
    tos: int
    ip_sum: int  # words of the constant IPv4 header fields
    pseudo_sum: int  # words of the TCP/UDP pseudo-header without its length
    ip_id: int

    def frame(self, l4: bytes) -> bytes:
        total_len = 20 + len(l4)
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        csum = finish_checksum(self.ip_sum + total_len + self.ip_id)
        return self.eth + IPV4.pack(0x45, self.tos, total_len, self.ip_id, 0x4000, self.ttl, self.proto, csum,
                                    self.src, self.dst) + l4


def make_path(src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, proto: int, ttl: int, tos: int,
              ip_id: int) -> Route:
    ip_sum = word_sum(bytes([0x45, tos, 0, 0, 0, 0, 0x40, 0, ttl, proto, 0, 0]) + src + dst)
    pseudo_sum = word_sum(src + dst + bytes([0, proto]))
    return Route(dst_mac + src_mac + ETH_IPV4, src, dst, proto, ttl, tos, ip_sum, pseudo_sum, ip_id)


def tcp_segment(path: Route, sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
                payload: bytes = b"", options: bytes = b"") -> bytes:
    offset = (20 + len(options)) // 4
    header = TCP.pack(sport, dport, seq, ack, offset << 4, flags, window, 0, 0) + options
    length = len(header) + len(payload)
    csum = finish_checksum(path.pseudo_sum + length + word_sum(header) + word_sum(payload))
    return path.frame(TCP.pack(sport, dport, seq, ack, offset << 4, flags, window, csum, 0) + options + payload)


def udp_datagram(path: Route, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    csum = finish_checksum(path.pseudo_sum + length + sport + dport + length + word_sum(payload)) or 0xFFFF
    return path.frame(UDP.pack(sport, dport, length, csum) + payload)


# -- protocol payloads --------------------------------------------------------------------------------


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


def tls_ext(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + u16(len(data)) + data


def client_hello(rng: random.Random, host: str, pq: bool, target_len: int) -> bytes:
    """A TLS 1.3 ClientHello record (RFC 8446 section 4.1.2) with SNI (RFC 6066 section 3), padded
    (RFC 7685) towards `target_len` bytes; with `pq` it carries an X25519MLKEM768 key share."""
    name = host.encode("ascii")
    groups = ([X25519MLKEM768] if pq else []) + [X25519, SECP256R1, SECP384R1]
    shares = b""
    if pq:
        shares += u16(X25519MLKEM768) + u16(1216) + rng.randbytes(1216)
    shares += u16(X25519) + u16(32) + rng.randbytes(32)
    alpn = b"\x02h2\x08http/1.1"
    exts = b"".join((
        tls_ext(0x0000, u16(len(name) + 3) + b"\x00" + u16(len(name)) + name),
        tls_ext(0x0017, b""),
        tls_ext(0xFF01, b"\x00"),
        tls_ext(0x000A, u16(2 * len(groups)) + b"".join(u16(g) for g in groups)),
        tls_ext(0x000B, b"\x01\x00"),
        tls_ext(0x0023, b""),
        tls_ext(0x0010, u16(len(alpn)) + alpn),
        tls_ext(0x0005, b"\x01\x00\x00\x00\x00"),
        tls_ext(0x000D, u16(2 * len(SIG_ALGS)) + b"".join(u16(a) for a in SIG_ALGS)),
        tls_ext(0x002B, b"\x04\x03\x04\x03\x03"),
        tls_ext(0x002D, b"\x01\x01"),
        tls_ext(0x0033, u16(len(shares)) + shares),
    ))
    suites = b"".join(u16(c) for c in CIPHER_SUITES)
    fixed = 5 + 4 + 2 + 32 + 1 + 32 + 2 + len(suites) + 2 + 2
    pad = target_len - (fixed + len(exts)) - 4
    if pad >= 0:
        exts += tls_ext(0x0015, bytes(pad))
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + u16(len(suites)) + suites
            + b"\x01\x00" + u16(len(exts)) + exts)
    handshake = b"\x01" + u24(len(body)) + body
    return b"\x16\x03\x01" + u16(len(handshake)) + handshake


def server_flight(rng: random.Random, pq: bool, total_len: int) -> bytes:
    """ServerHello (RFC 8446 section 4.1.3) + ChangeCipherSpec + one application_data record holding
    the encrypted rest of the flight, `total_len` bytes in all."""
    key = u16(X25519MLKEM768) + u16(1120) + rng.randbytes(1120) if pq else u16(X25519) + u16(32) + rng.randbytes(32)
    exts = tls_ext(0x002B, b"\x03\x04") + tls_ext(0x0033, key)
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + u16(0x1301) + b"\x00"
            + u16(len(exts)) + exts)
    handshake = b"\x02" + u24(len(body)) + body
    stream = b"\x16\x03\x03" + u16(len(handshake)) + handshake + b"\x14\x03\x03\x00\x01\x01"
    fill = max(64, total_len - len(stream) - 5)
    return stream + b"\x17\x03\x03" + u16(fill) + rng.randbytes(fill)


def server_flight_len(pq: bool) -> int:
    """Bytes of ServerHello + ChangeCipherSpec alone, to plan segment counts before building."""
    return 5 + 4 + (2 + 32 + 1 + 32 + 2 + 1 + 2) + 6 + (4 + (1124 if pq else 36)) + 6


def stun_message(msg_type: int, txid: bytes, attrs: bytes) -> bytes:
    """A STUN message (RFC 8489 section 5) ending with a FINGERPRINT attribute (section 14.7)."""
    head = u16(msg_type) + u16(len(attrs) + 8) + STUN_MAGIC_COOKIE.to_bytes(4, "big") + txid
    crc = (zlib.crc32(head + attrs) ^ STUN_FINGERPRINT_XOR) & 0xFFFFFFFF
    return head + attrs + u16(0x8028) + u16(4) + crc.to_bytes(4, "big")


def stun_binding_request(txid: bytes) -> bytes:
    software = b"meshpcap-bench"
    attr = u16(0x8022) + u16(len(software)) + software + bytes(-len(software) % 4)
    return stun_message(0x0001, txid, attr)


def stun_binding_response(txid: bytes, port: int) -> bytes:
    # XOR-MAPPED-ADDRESS, RFC 8489 section 14.2: port XOR top half of the cookie, address XOR cookie.
    xaddr = (int.from_bytes(PUBLIC_NAT_ADDRESS, "big") ^ STUN_MAGIC_COOKIE).to_bytes(4, "big")
    attr = u16(0x0020) + u16(8) + b"\x00\x01" + u16(port ^ (STUN_MAGIC_COOKIE >> 16)) + xaddr
    return stun_message(0x0101, txid, attr)


def dns_name(host: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in host.split(".")) + b"\x00"


def dns_query(qid: int, host: str) -> bytes:
    # RFC 1035 section 4.1: header, one question of type A (1), class IN (1).
    return u16(qid) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + dns_name(host) + b"\x00\x01\x00\x01"


def dns_answer(qid: int, host: str, addresses: list[bytes], ttl: int) -> bytes:
    answers = b"".join(b"\xc0\x0c\x00\x01\x00\x01" + ttl.to_bytes(4, "big") + b"\x00\x04" + a for a in addresses)
    return (u16(qid) + b"\x81\x80\x00\x01" + u16(len(addresses)) + b"\x00\x00\x00\x00" + dns_name(host)
            + b"\x00\x01\x00\x01" + answers)


# -- flows --------------------------------------------------------------------------------------------

Packet = tuple[int, bytes]  # (microseconds since START_S, Ethernet frame)

TLS_MAX_OVERHEAD = 3 + 2 + 5 + 1 + 3  # handshake, ClientHello, server flight, client Finished, close


@dataclass(frozen=True, slots=True)
class Host:
    mac: bytes
    addr: bytes


@dataclass(frozen=True, slots=True)
class TlsPlan:
    seed: int
    client: Host
    server: bytes
    sport: int
    host: str
    pq: bool
    ch_len: int
    ch_split: int  # 0 = one segment, else the byte at which the second segment starts
    sf_len: int
    n_data: int
    start: int
    mean_gap: float
    rtt: int

    @property
    def sf_segments(self) -> int:
        return math.ceil(self.sf_len / MSS)

    @property
    def overhead(self) -> int:
        return 3 + (2 if self.ch_split else 1) + self.sf_segments + 1 + 3


def tls_flow(p: TlsPlan, pool: bytes) -> Iterator[Packet]:
    """A full TLS-over-TCP connection to port 443 with correct sequence and acknowledgement numbers."""
    rng = random.Random(p.seed)
    up = make_path(p.client.mac, GATEWAY_MAC, p.client.addr, p.server, 6, 128, 0, rng.getrandbits(16))
    down = make_path(GATEWAY_MAC, p.client.mac, p.server, p.client.addr, 6, rng.randint(40, 120), 0,
                     rng.getrandbits(16))
    cp, sp = p.sport, 443
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    cwin, swin = 64240, 65160
    t = p.start
    rtt = p.rtt
    M = 0xFFFFFFFF
    yield t, tcp_segment(up, cp, sp, cseq, 0, SYN, 64240, options=SYN_OPTIONS)
    cseq = (cseq + 1) & M
    t += rtt
    yield t, tcp_segment(down, sp, cp, sseq, cseq, SYN | ACK, 65160, options=SYN_OPTIONS)
    sseq = (sseq + 1) & M
    t += rng.randint(30, 200)
    cwin, swin = 1026, 509  # scaled windows after the handshake
    yield t, tcp_segment(up, cp, sp, cseq, sseq, ACK, cwin)
    hello = client_hello(rng, p.host, p.pq, p.ch_len)
    parts = [hello[:p.ch_split], hello[p.ch_split:]] if p.ch_split else [hello]
    for part in parts:
        t += rng.randint(50, 400)
        yield t, tcp_segment(up, cp, sp, cseq, sseq, PSH | ACK, cwin, part)
        cseq = (cseq + len(part)) & M
    flight = server_flight(rng, p.pq, p.sf_len)
    assert len(flight) == p.sf_len
    t += rtt
    for i in range(0, len(flight), MSS):
        part = flight[i:i + MSS]
        yield t, tcp_segment(down, sp, cp, sseq, cseq, (PSH | ACK) if i + MSS >= len(flight) else ACK, swin, part)
        sseq = (sseq + len(part)) & M
        t += rng.randint(5, 120)
    t += rng.randint(200, 3000)
    finished = b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35" + rng.randbytes(53)
    yield t, tcp_segment(up, cp, sp, cseq, sseq, PSH | ACK, cwin, finished)
    cseq = (cseq + len(finished)) & M

    pool_hi = len(pool) - 1500
    mean_gap = p.mean_gap
    c_acked, s_acked = sseq, -1  # what each side last acknowledged; pure ACKs only acknowledge new data
    for _ in range(p.n_data):
        t += int(rng.expovariate(1.0 / mean_gap)) + 1
        r = rng.random()
        if r < 0.12:
            if sseq != c_acked:
                yield t, tcp_segment(up, cp, sp, cseq, sseq, ACK, cwin)
                c_acked = sseq
                continue
            if cseq != s_acked:
                yield t, tcp_segment(down, sp, cp, sseq, cseq, ACK, swin)
                s_acked = cseq
                continue
        size = rng.randint(100, 1400)
        off = rng.randint(0, pool_hi)
        payload = b"\x17\x03\x03" + u16(size - 5) + pool[off:off + size - 5]
        if r < 0.45:
            yield t, tcp_segment(up, cp, sp, cseq, sseq, PSH | ACK, cwin, payload)
            cseq = (cseq + size) & M
            c_acked = sseq
        else:
            yield t, tcp_segment(down, sp, cp, sseq, cseq, PSH | ACK, swin, payload)
            sseq = (sseq + size) & M
            s_acked = cseq

    t += rng.randint(1000, 200_000)
    if rng.random() < 0.7:  # the client closes first
        yield t, tcp_segment(up, cp, sp, cseq, sseq, FIN | ACK, cwin)
        cseq = (cseq + 1) & M
        t += rtt
        yield t, tcp_segment(down, sp, cp, sseq, cseq, FIN | ACK, swin)
        sseq = (sseq + 1) & M
        t += rng.randint(20, 200)
        yield t, tcp_segment(up, cp, sp, cseq, sseq, ACK, cwin)
    else:
        yield t, tcp_segment(down, sp, cp, sseq, cseq, FIN | ACK, swin)
        sseq = (sseq + 1) & M
        t += rng.randint(50, 500)
        yield t, tcp_segment(up, cp, sp, cseq, sseq, FIN | ACK, cwin)
        cseq = (cseq + 1) & M
        t += rtt
        yield t, tcp_segment(down, sp, cp, sseq, cseq, ACK, swin)


@dataclass(frozen=True, slots=True)
class MediaPlan:
    seed: int
    client: Host
    server: bytes
    cport: int
    sport: int
    channel: int  # 0 = plain RTP, else the TURN channel number (RFC 8656 section 12)
    n_rtp: int
    start: int
    rtt: int


def media_flow(p: MediaPlan, pool: bytes) -> Iterator[Packet]:
    """A UDP media flow: STUN Binding request/response, then RTP both ways (optionally as ChannelData)."""
    rng = random.Random(p.seed)
    tos = 0xB8 if rng.random() < 0.5 else 0  # DSCP EF on some clients' audio
    up = make_path(p.client.mac, GATEWAY_MAC, p.client.addr, p.server, 17, 128, tos, rng.getrandbits(16))
    down = make_path(GATEWAY_MAC, p.client.mac, p.server, p.client.addr, 17, rng.randint(40, 120), 0,
                     rng.getrandbits(16))
    cp, sp = p.cport, p.sport
    t = p.start
    txid = rng.randbytes(12)
    yield t, udp_datagram(up, cp, sp, stun_binding_request(txid))
    t += p.rtt
    yield t, udp_datagram(down, sp, cp, stun_binding_response(txid, cp))
    # RTP fixed header, RFC 3550 section 5.1: V=2 (0x80), payload type, sequence, timestamp, SSRC.
    state = {
        True: [rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32), rng.choice((111, 96, 100, 120))],
        False: [rng.getrandbits(16), rng.getrandbits(32), rng.getrandbits(32), rng.choice((111, 96, 100, 120))],
    }
    pool_hi = len(pool) - 1300
    channel = p.channel
    for _ in range(p.n_rtp):
        t += int(rng.expovariate(1 / 10_000)) + 1  # two 20 ms streams interleaved
        outgoing = rng.random() < 0.5
        st = state[outgoing]
        st[0] = (st[0] + 1) & 0xFFFF
        st[1] = (st[1] + 960) & 0xFFFFFFFF
        size = rng.randint(100, 1200)
        off = rng.randint(0, pool_hi) & ~1
        marker = 0x80 if rng.random() < 0.02 else 0
        rtp = struct.pack("!BBHII", 0x80, st[3] | marker, st[0], st[1], st[2]) + pool[off:off + size - 12]
        if channel:
            rtp = u16(channel) + u16(len(rtp)) + rtp  # ChannelData, RFC 8656 section 12.4
        if outgoing:
            yield t, udp_datagram(up, cp, sp, rtp)
        else:
            yield t, udp_datagram(down, sp, cp, rtp)


def dns_exchange(seed: int, client: Host, cport: int, host: str, addresses: list[bytes], start: int) -> Iterator[Packet]:
    rng = random.Random(seed)
    resolver = RESOLVERS[seed & 1]
    up = make_path(client.mac, GATEWAY_MAC, client.addr, resolver, 17, 128, 0, rng.getrandbits(16))
    down = make_path(GATEWAY_MAC, client.mac, resolver, client.addr, 17, 60, 0, rng.getrandbits(16))
    qid = rng.getrandbits(16)
    yield start, udp_datagram(up, cport, 53, dns_query(qid, host))
    yield start + rng.randint(2_000, 60_000), udp_datagram(down, 53, cport, dns_answer(qid, host, addresses,
                                                                                        rng.randint(10, 3600)))


def failed_syn(seed: int, client: Host, server: bytes, cport: int, dport: int, start: int) -> Iterator[Packet]:
    """A SYN nobody answers, retransmitted three times with exponential backoff (RFC 6298 section 5)."""
    rng = random.Random(seed)
    up = make_path(client.mac, GATEWAY_MAC, client.addr, server, 6, 128, 0, rng.getrandbits(16))
    seq = rng.getrandbits(32)
    for delay in (0, 1_000_000, 3_000_000, 7_000_000):
        yield start + delay + rng.randint(0, 2000), tcp_segment(up, cport, dport, seq, 0, SYN, 64240,
                                                               options=SYN_OPTIONS)


def refused_syn(seed: int, client: Host, server: bytes, cport: int, dport: int, start: int) -> Iterator[Packet]:
    """A SYN answered by RST+ACK (RFC 9293 section 3.10.7.1: closed port)."""
    rng = random.Random(seed)
    up = make_path(client.mac, GATEWAY_MAC, client.addr, server, 6, 128, 0, rng.getrandbits(16))
    down = make_path(GATEWAY_MAC, client.mac, server, client.addr, 6, rng.randint(40, 120), 0, 0)
    seq = rng.getrandbits(32)
    yield start, tcp_segment(up, cport, dport, seq, 0, SYN, 64240, options=SYN_OPTIONS)
    yield start + rng.randint(3_000, 80_000), tcp_segment(down, dport, cport, 0, (seq + 1) & 0xFFFFFFFF,
                                                          RST | ACK, 0)


# -- planning -------------------------------------------------------------------------------------------


def split_counts(rng: random.Random, total: int, minimums: list[int], sigma: float) -> list[int]:
    """Share `total` among flows with heavy-tailed (log-normal) weights, each at least its minimum."""
    spare = total - sum(minimums)
    weights = [rng.lognormvariate(0.0, sigma) for _ in minimums]
    scale = spare / sum(weights)
    extra = [int(w * scale) for w in weights]
    for i in range(spare - sum(extra)):
        extra[i % len(extra)] += 1
    return [m + e for m, e in zip(minimums, extra)]


def random_addr(rng: random.Random, prefix: tuple[int, ...], bits: int) -> bytes:
    """A random host address inside prefix/bits (octets beyond the prefix are drawn)."""
    base = int.from_bytes(bytes(prefix) + bytes(4 - len(prefix)), "big")
    host = rng.randint(1, (1 << (32 - bits)) - 2)
    value = base | host
    if value & 0xFF in (0, 255):
        value ^= 0x01
    return value.to_bytes(4, "big")


def build_flows(packets: int, seed: int) -> tuple[Mix, list[Iterator[Packet]]]:
    """Plan every flow for (packets, seed) and return one packet iterator per flow."""
    mix = plan_mix(packets)
    rng = random.Random(seed)
    pool = random.Random(seed ^ 0x5EED).randbytes(1 << 21)

    clients = []
    seen = set()
    while len(clients) < 40:
        addr = bytes([10, 20, rng.randint(0, 255), rng.randint(1, 254)])
        if addr not in seen:
            seen.add(addr)
            clients.append(Host(bytes([0x02, 0x11]) + addr, addr))

    def ms_server() -> bytes:
        # Servers: 20.0.0.0/8 and 52.112.0.0/14.
        return random_addr(rng, (20,), 8) if rng.random() < 0.5 else random_addr(rng, (52, 112), 14)

    host_addrs = {name: [ms_server() for _ in range(rng.randint(1, 4))] for name, _ in HOSTS}
    names = [name for name, _ in HOSTS]
    weights = [w for _, w in HOSTS]

    used: set[tuple] = set()

    def ephemeral(client: Host, server: bytes, dport: int) -> int:
        while True:
            port = rng.randint(49152, 65535)
            key = (client.addr, port, server, dport)
            if key not in used:
                used.add(key)
                return port

    flows: list[Iterator[Packet]] = []
    flow_seed = seed * 1_000_003

    # TLS flows: decide handshake shapes first so the data-segment budget comes out exact.
    shapes = []
    for _ in range(mix.tls_flows):
        pq = rng.random() < 0.45
        if pq:
            ch_len = rng.randint(1560, 1800)
            ch_split = rng.randint(600, 1400) if rng.random() < 0.3 else MSS
        else:
            ch_len = rng.randint(300, 700)
            ch_split = rng.randint(100, ch_len - 100) if rng.random() < 0.1 else 0
        sf_len = server_flight_len(pq) + rng.randint(1500, 4200)
        shapes.append((pq, ch_len, ch_split, sf_len))
    overheads = [3 + (2 if s[2] else 1) + math.ceil(s[3] / MSS) + 1 + 3 for s in shapes]
    totals = split_counts(rng, mix.tls_packets, [o + 1 for o in overheads], 1.3)
    for i, ((pq, ch_len, ch_split, sf_len), total, overhead) in enumerate(zip(shapes, totals, overheads)):
        n_data = total - overhead
        client = rng.choice(clients)
        host = rng.choices(names, weights)[0]
        server = rng.choice(host_addrs[host])
        mean_gap = rng.uniform(2_000, 120_000)
        duration = min(n_data * mean_gap, SPAN_US * 0.6)
        mean_gap = max(50.0, duration / n_data)
        start = 0 if i == 0 else rng.randint(0, int(SPAN_US - duration * 1.3) - 20_000_000)
        plan = TlsPlan(flow_seed + len(flows), client, server, ephemeral(client, server, 443), host, pq, ch_len,
                       ch_split, sf_len, n_data, start, mean_gap, rng.randint(4_000, 90_000))
        assert plan.overhead == overhead
        flows.append(tls_flow(plan, pool))

    media_servers = [random_addr(rng, (52, 112), 14) for _ in range(120)]
    server_ports = [3478, 3479, 3480, 3481] * 60 + list(range(30000, 30500))
    counts = split_counts(rng, mix.media_packets, [3] * mix.media_flows, 0.8)
    for count in counts:
        while True:
            client = rng.choice(clients)
            cport = rng.randint(50000, 50059)
            server = rng.choice(media_servers)
            sport = rng.choice(server_ports)
            if (client.addr, cport, server, sport) not in used:
                used.add((client.addr, cport, server, sport))
                break
        n_rtp = count - 2
        channel = rng.randint(0x4000, 0x4FFF) if rng.random() < 0.3 else 0
        duration = n_rtp * 10_000
        start = rng.randint(0, max(1, int(SPAN_US - duration * 1.3) - 20_000_000))
        flows.append(media_flow(MediaPlan(flow_seed + len(flows), client, server, cport, sport, channel, n_rtp,
                                          start, rng.randint(4_000, 90_000)), pool))

    for _ in range(mix.dns_pairs):
        client = rng.choice(clients)
        host = rng.choices(names, weights)[0]
        resolver = RESOLVERS[(flow_seed + len(flows)) & 1]
        flows.append(dns_exchange(flow_seed + len(flows), client, ephemeral(client, resolver, 53), host,
                                  host_addrs[host], rng.randint(1, SPAN_US - 1_000_000)))
    for _ in range(mix.failed_syns):
        client = rng.choice(clients)
        server, dport = ms_server(), rng.choice((443, 443, 443, 3478, 80))
        flows.append(failed_syn(flow_seed + len(flows), client, server, ephemeral(client, server, dport), dport,
                                rng.randint(1, SPAN_US - 10_000_000)))
    for _ in range(mix.rst_syns):
        client = rng.choice(clients)
        server, dport = ms_server(), rng.choice((443, 80, 8443, 3478))
        flows.append(refused_syn(flow_seed + len(flows), client, server, ephemeral(client, server, dport), dport,
                                 rng.randint(1, SPAN_US - 1_000_000)))
    return mix, flows


def write_pcap(out: Path | str, packets: int = 1_000_000, seed: int = 1) -> tuple[Mix, int]:
    """Write the capture; return the mix and the number of packets written."""
    mix, flows = build_flows(packets, seed)
    written = 0
    with open(out, "wb", buffering=1 << 22) as f:
        f.write(PCAP_HEADER)
        chunk: list[bytes] = []
        pack = REC.pack
        for ts, frame in heapq.merge(*flows, key=itemgetter(0)):
            n = len(frame)
            chunk.append(pack(START_S + ts // 1_000_000, ts % 1_000_000, n, n))
            chunk.append(frame)
            if len(chunk) >= 8192:
                f.write(b"".join(chunk))
                chunk.clear()
            written += 1
        f.write(b"".join(chunk))
    return mix, written


def write_tiny_flows(out: Path | str, flows: int = 2_000_000, seed: int = 1) -> int:
    """Write ``flows`` UDP datagrams without payload, each its own 5-tuple (a scan, or a busy
    gateway over a day: 2,000,000 flows in 116 MB), with numpy rather than a loop per packet.

    Clients are 10.64.0.0/10 addresses (one per 4,096 flows), servers 100.64.0.0/10 (chosen at
    random per flow), ports 1024-65535 at random; timestamps increase over about an hour."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = flows
    rec = np.dtype([("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
                    ("eth", "V14"), ("vihl", "u1"), ("tos", "u1"), ("tot_len", ">u2"), ("ip_id", ">u2"),
                    ("frag", ">u2"), ("ttl", "u1"), ("proto", "u1"), ("ip_sum", ">u2"), ("src", ">u4"),
                    ("dst", ">u4"), ("sport", ">u2"), ("dport", ">u2"), ("udp_len", ">u2"), ("udp_sum", ">u2")])
    assert rec.itemsize == 16 + 42
    a = np.zeros(n, rec)
    us = np.sort(rng.integers(0, 3_600 * 1_000_000, n, dtype=np.int64))
    a["ts_sec"] = START_S + us // 1_000_000
    a["ts_usec"] = us % 1_000_000
    a["incl"] = a["orig"] = 42
    a["eth"] = np.frombuffer(GATEWAY_MAC + bytes.fromhex("00155d0a00ff") + ETH_IPV4, dtype="V14")[0]
    a["vihl"], a["ttl"], a["proto"], a["frag"] = 0x45, 64, 17, 0x4000
    a["tot_len"], a["udp_len"] = 28, 8
    idx = np.arange(n, dtype=np.int64)
    a["ip_id"] = idx & 0xFFFF
    src = (10 << 24 | 64 << 16) + (idx >> 12)
    a["src"] = src
    dst = (100 << 24 | 64 << 16) + rng.integers(0, 1 << 22, n, dtype=np.int64)
    a["dst"] = dst
    # distinct 5-tuples: each client's 4,096 flows use distinct source ports
    a["sport"] = 1024 + ((idx * 40_503) & 4095) * 15
    a["dport"] = rng.integers(1024, 65536, n, dtype=np.int64)
    # IPv4 header checksum (RFC 1071) over the 10 header words; the UDP checksum is 0: none (RFC 768)
    words = (0x4500 + 28 + (idx & 0xFFFF) + 0x4000 + (64 << 8 | 17) + (src >> 16) + (src & 0xFFFF)
             + (dst >> 16) + (dst & 0xFFFF))
    while (words >> 16).any():
        words = (words & 0xFFFF) + (words >> 16)
    a["ip_sum"] = 0xFFFF - words
    with open(out, "wb") as f:
        f.write(PCAP_HEADER)
        f.write(a.tobytes())
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="pcap file to write")
    parser.add_argument("--packets", type=int, default=1_000_000, help="exact number of packets (default 1000000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--tiny-flows", type=int, metavar="N",
                        help="instead: N UDP datagrams without payload, each its own flow (see write_tiny_flows)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.tiny_flows is not None:
        written = write_tiny_flows(args.out, args.tiny_flows, args.seed)
        print(f"{args.out}: {written} packets (one UDP flow each), {args.out.stat().st_size / 1e6:.1f} MB in "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
        return 0
    try:
        mix, written = write_pcap(args.out, args.packets, args.seed)
    except ValueError as exc:
        print(f"gen.py: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - began
    size = args.out.stat().st_size
    print(f"{args.out}: {written} packets, {size / 1e6:.1f} MB in {elapsed:.1f} s "
          f"({mix.tls_flows} TLS flows, {mix.media_flows} media flows, {mix.dns_pairs} DNS exchanges, "
          f"{mix.failed_syns} unanswered SYNs, {mix.rst_syns} refused SYNs)", file=sys.stderr)
    if written != args.packets:
        print(f"gen.py: wrote {written} packets, expected {args.packets}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
