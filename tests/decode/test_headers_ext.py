"""The compiled header decoder (meshpcap/decode/_headers.c) against the numpy decoder it accelerates.

Every batch is decoded twice, with ``frames.HEADERS`` set and with it None; every column of
the result must be identical.  The packets are the samples', generated headers with random
fields (lengths, fragments, offsets, ports, truncation) on every link type, and random bytes."""

from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.capture import open_capture
from meshpcap.decode import frames as F
from tests.conftest import SAMPLES

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.decode import _headers as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled header decoder is not built (no C compiler?)")


_UNFILLED = F._unfilled


def _poisoned(n: int) -> F.Decoded:
    """F._unfilled's columns holding garbage (0xA5 bytes), as memory from earlier batches would: the compiled
    decoder must write every row of every column, the packets it leaves to numpy included."""
    d = _UNFILLED(n)
    for name in F._COMMON_COLUMNS:
        getattr(d, name).view(np.uint8)[:] = 0xA5
    return d


def _decode_both(data: bytes, offset, caplen, linktype) -> tuple[dict, int]:
    saved, unfilled = F.HEADERS, F._unfilled
    try:
        F.HEADERS, F._unfilled = COMPILED, _poisoned
        fast = F.decode_batch(data, offset, caplen, linktype)
        rest = np.empty(len(offset), np.int64)
        F.HEADERS = None
        slow = F.decode_batch(data, offset, caplen, linktype)
    finally:
        F.HEADERS, F._unfilled = saved, unfilled
    taken = 0
    if len(offset):
        d = F.Decoded(**{f.name: np.zeros_like(getattr(slow, f.name)) for f in dataclasses.fields(slow)})
        k = COMPILED.decode_common(data, np.asarray(offset, np.int64), np.asarray(caplen, np.int64),
                                   np.asarray(linktype, np.int32), tuple(getattr(d, c) for c in F._COMMON_COLUMNS),
                                   rest)
        taken = len(offset) - k
    for f in dataclasses.fields(slow):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        assert a.dtype == b.dtype, f.name
        assert np.array_equal(a, b), (f.name, np.nonzero(a != b)[0][:5], a[a != b][:5], b[a != b][:5])
    return {f.name: getattr(slow, f.name) for f in dataclasses.fields(slow)}, taken


def _batch(frames: list[bytes], linktypes: list[int], cut: list[int] | None = None):
    lens = np.array([len(x) for x in frames], np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if frames else np.zeros(0, np.int64)
    caplen = lens if cut is None else np.minimum(lens, np.array(cut, np.int64))
    return b"".join(frames), offs, caplen, np.array(linktypes, np.int32)


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_samples_decode_the_same(sample):
    taken = 0
    with open_capture(SAMPLES / sample, batch_bytes=4096) as cap:
        for b in cap.batches():
            taken += _decode_both(b.data, b.offset, b.caplen, b.linktype)[1]
    assert taken > 0  # the compiled path did take part


# ---------------------------------------------------------------- generated headers
def _ipv4(proto: int, body: bytes, total: int | None, ihl: int, ff: int, ver: int = 4) -> bytes:
    opts = b"\x01" * (ihl * 4 - 20) if ihl >= 5 else b""
    tl = (ihl * 4 + len(body)) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", (ver << 4) | (ihl & 15), 0, tl & 0xFFFF, 0x1234, ff, 64, proto, 0,
                      bytes([10, 0, 0, 1]), bytes([20, 0, 0, 2]))
    return hdr + opts + body


def _ipv6(nh: int, body: bytes, plen: int | None, ver: int = 6) -> bytes:
    pl = len(body) if plen is None else plen
    return struct.pack("!IHBB16s16s", ver << 28, pl & 0xFFFF, nh, 57, bytes(range(16)), bytes(range(16, 32))) + body


def _tcp(sport: int, dport: int, doff: int, flags: int, payload: bytes) -> bytes:
    hdr = struct.pack("!HHIIBBHHH", sport, dport, 0xFFFFFFF0, 7, (doff & 15) << 4 | (flags >> 8 & 1), flags & 0xFF,
                      1024, 0, 0)
    return hdr + b"\0" * max(doff * 4 - 20, 0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


LINKS = {
    1: lambda ip, v: b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", 0x86DD if v == 6 else 0x0800) + ip,
    113: lambda ip, v: b"\0" * 14 + struct.pack("!H", 0x86DD if v == 6 else 0x0800) + ip,
    276: lambda ip, v: struct.pack("!H", 0x86DD if v == 6 else 0x0800) + b"\0" * 18 + ip,
    101: lambda ip, v: ip, 12: lambda ip, v: ip, 14: lambda ip, v: ip, 228: lambda ip, v: ip, 229: lambda ip, v: ip,
    0: lambda ip, v: struct.pack("<I", 24 if v == 6 else 2) + ip,  # not compiled: all numpy
}
PORTS = st.sampled_from([0, 53, 443, 3478, 4789, 6081, 8472, 30000, 50000, 65535])

packet = st.fixed_dictionaries({
    "link": st.sampled_from(sorted(LINKS)),
    "v": st.sampled_from([4, 6]),
    "ver_nibble": st.sampled_from([None, None, None, 5, 0]),
    "proto": st.sampled_from([6, 6, 17, 17, 1, 58, 47, 0, 44]),
    "sport": PORTS, "dport": PORTS,
    "doff": st.sampled_from([5, 5, 8, 15, 4, 0]),
    "flags": st.integers(0, 0x1FF),
    "payload": st.binary(max_size=40),
    "ihl": st.sampled_from([5, 5, 6, 15, 4]),
    "total": st.one_of(st.none(), st.none(), st.integers(0, 80), st.just(60000)),
    "ff": st.sampled_from([0, 0, 0x4000, 0x2000, 0x0001, 0x2005]),
    "cut": st.one_of(st.none(), st.none(), st.integers(0, 90)),
})


def _frame(p) -> tuple[bytes, int, int | None]:
    t = _tcp(p["sport"], p["dport"], p["doff"], p["flags"], p["payload"]) if p["proto"] == 6 else (
        _udp(p["sport"], p["dport"], p["payload"]) if p["proto"] == 17 else p["payload"] + b"\0" * 8)
    if p["v"] == 4:
        ip = _ipv4(p["proto"], t, p["total"], p["ihl"], p["ff"], p["ver_nibble"] or 4)
    else:
        ip = _ipv6(p["proto"], t, p["total"], p["ver_nibble"] or 6)
    return LINKS[p["link"]](ip, p["v"]), p["link"], p["cut"]


@needs_ext
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(packet, min_size=1, max_size=30))
def test_generated_headers_decode_the_same(packets):
    frames, links, cuts = zip(*(_frame(p) for p in packets))
    cut = [len(f) if c is None else c for f, c in zip(frames, cuts)]
    _decode_both(*_batch(list(frames), list(links), cut))


@needs_ext
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.binary(max_size=80), st.sampled_from(sorted(LINKS))), min_size=1, max_size=20))
def test_random_bytes_decode_the_same(frames):
    _decode_both(*_batch([f for f, _ in frames], [lt for _, lt in frames]))


@needs_ext
def test_common_packets_are_taken_and_others_left():
    tcp4 = LINKS[1](_ipv4(6, _tcp(50000, 443, 5, 0x18, b"hello"), None, 5, 0x4000), 4)
    udp6 = LINKS[276](_ipv6(17, _udp(50001, 3478, b"x" * 20), None), 6)
    frag = LINKS[1](_ipv4(17, _udp(1, 2, b"y"), None, 5, 0x2000), 4)  # a first fragment: numpy
    vxlan = LINKS[101](_ipv4(17, _udp(1, 4789, b"\x08" + b"\0" * 30), None, 5, 0), 4)  # a tunnel: numpy
    cols, taken = _decode_both(*_batch([tcp4, udp6, frag, vxlan], [1, 276, 1, 101]))
    assert taken == 2
    assert cols["sport"][:2].tolist() == [50000, 50001] and cols["payload_cap"][:2].tolist() == [5, 20]
    assert cols["more_frags"][2] and cols["encapsulated"][3]


@needs_ext
def test_bad_arguments_raise():
    data, offs, caplen, lt = _batch([b"\0" * 60], [1])
    d = F.decode_batch(data, offs, caplen, lt)
    cols = tuple(getattr(d, c) for c in F._COMMON_COLUMNS)
    with pytest.raises(ValueError):
        COMPILED.decode_common(data, offs, caplen, lt, cols[:-1], np.empty(1, np.int64))
    with pytest.raises(ValueError):
        COMPILED.decode_common(data, offs, caplen, lt.astype(np.int64), cols, np.empty(1, np.int64))
    with pytest.raises(TypeError):
        COMPILED.decode_common(data, offs, caplen, lt, cols, bytes(8))



@needs_ext
def test_offsets_outside_the_data_are_left_to_numpy():
    """decode_batch is public: lengths and offsets past the data, negative or huge, must not be read."""
    data = bytes(200)
    offs = np.array([0, 2**62, -5, 150, 0, 190], np.int64)
    caps = np.array([2**62, 10, 10, 100, -1, 2**63 - 1], np.int64)
    _decode_both(data, offs, caps, np.ones(len(offs), np.int32))
