"""RTP calls with known impairments, for the media tests: packets built byte by byte (RFC 3550 section 5.1),
written with the project's capture writers.  The expected numbers are computed in the tests from the
parameters given here, not by the code under test."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from tests.builders import MAC_A, MAC_B, SEC, T0, write_pcap


def rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes = b"\x00" * 40, marker: bool = False,
        csrc: tuple[int, ...] = (), ext: bytes | None = None, pad: int = 0) -> bytes:
    """An RTP packet: V=2, P, X, CC, M, PT, sequence, timestamp, SSRC, CSRCs, extension, payload, padding."""
    b0 = 0x80 | (0x20 if pad else 0) | (0x10 if ext is not None else 0) | len(csrc)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrc)
    if ext is not None:
        out += struct.pack("!HH", 0xBEDE, len(ext) // 4) + ext
    out += payload
    if pad:
        out += b"\x00" * (pad - 1) + bytes([pad])
    return out


def rtcp_sr(ssrc: int) -> bytes:
    """An RTCP sender report header with no report blocks (RFC 3550 section 6.4.1): 28 bytes."""
    return struct.pack("!BBHI", 0x80, 200, 6, ssrc) + b"\x00" * 20


def channel_data(channel: int, data: bytes, pad: bool = False) -> bytes:
    out = struct.pack("!HH", channel, len(data)) + data
    return out + b"\x00" * (-len(out) % 4) if pad else out


def send_indication(data: bytes, txid: bytes = b"\x01" * 12, method_class: int = 0x0016) -> bytes:
    """A TURN Send (0x0016) or Data (0x0017) indication: XOR-PEER-ADDRESS then DATA (RFC 8656 sections 10-11)."""
    peer = struct.pack("!HHBBH4s", 0x0012, 8, 0, 1, 0x1234 ^ 0x2112, bytes(4))
    body = peer + struct.pack("!HH", 0x0013, len(data)) + data + b"\x00" * (-len(data) % 4)
    return struct.pack("!HHI", method_class, len(body), 0x2112A442) + txid + body


def ms_multiplex(data: bytes, session: bytes = b"\x07" * 8) -> bytes:
    """An MS-TURN multiplexed channel frame: 0xFF10, length, 8-byte session id, data."""
    return struct.pack("!HH", 0xFF10, 8 + len(data)) + session + data


def _ipv4_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    ulen = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0, bytes(map(int, src.split("."))),
                     bytes(map(int, dst.split("."))))
    return ip + struct.pack("!HHHH", sport, dport, ulen, 0) + payload


def eth_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    """Ethernet II + IPv4 + UDP around ``payload`` (checksums zero: allowed for UDP over IPv4, RFC 768)."""
    mac = lambda m: bytes(int(x, 16) for x in m.split(":"))  # noqa: E731
    return mac(MAC_B) + mac(MAC_A) + b"\x08\x00" + _ipv4_udp(src, sport, dst, dport, payload)


@dataclass
class Call:
    """One RTP stream with known impairments: packet i is sent at ``start + i * interval`` carrying
    sequence ``seq0 + i`` and timestamp ``ts0 + i * step``, and arrives ``delay[i]`` ns later."""

    ssrc: int = 0x11223344
    pt: int = 111
    clock: int = 48000
    interval_ns: int = 20_000_000
    count: int = 500
    seq0: int = 65000  # near the wrap, so the extended sequence is exercised
    ts0: int = 4_294_000_000
    start_ns: int = T0 + SEC
    lost: set[int] = field(default_factory=set)  # packet indices never sent
    duplicated: set[int] = field(default_factory=set)  # sent twice, the copy 1 ms later
    swapped: set[int] = field(default_factory=set)  # packet i arrives after packet i + 1
    delay_ns: dict[int, int] = field(default_factory=dict)  # extra arrival delay per packet (jitter)
    gap: tuple[int, int] | None = None  # (first index, count): the sender stops (not loss: no numbers used)
    framing: str = "direct"  # direct | channel | indication | ms-multiplex

    @property
    def step(self) -> int:
        return self.clock * self.interval_ns // SEC

    def packets(self) -> list[tuple[int, int, int, int]]:
        """(arrival ns, index, sequence, timestamp) in arrival order."""
        out = []
        shift = 0
        for i in range(self.count):
            if self.gap and i == self.gap[0]:
                shift = self.gap[1]  # the sender pauses: time and timestamps run on, sequence does not
            send = self.start_ns + (i + shift) * self.interval_ns
            ts = self.ts0 + (i + shift) * self.step
            s = (self.seq0 + i) & 0xFFFF
            if i in self.lost:
                continue
            at = send + self.delay_ns.get(i, 0)
            if i in self.swapped:
                at += self.interval_ns + 1_000_000
            out.append((at, i, s, ts))
            if i in self.duplicated:
                out.append((at + 1_000_000, i, s, ts))
        return sorted(out)

    def payload(self, seq: int, ts: int) -> bytes:
        data = rtp(self.pt, seq, ts, self.ssrc)
        if self.framing == "channel":
            return channel_data(0x4001, data)
        if self.framing == "indication":
            return send_indication(data, txid=struct.pack("!I", seq) * 3, method_class=0x0017)
        if self.framing == "ms-multiplex":
            return ms_multiplex(data)
        return data


def write_calls(path: Path, calls: list[tuple[Call, tuple[str, int, str, int]]], extra=()) -> Path:
    """A pcap of the calls (each with its endpoints src, sport, dst, dport) and ``extra`` (ns, frame) packets."""
    pkts = list(extra)
    for call, (src, sport, dst, dport) in calls:
        for at, _i, seq, ts in call.packets():
            pkts.append((at, eth_udp(src, sport, dst, dport, call.payload(seq, ts))))
    pkts.sort(key=lambda p: p[0])
    return write_pcap(path, pkts)
