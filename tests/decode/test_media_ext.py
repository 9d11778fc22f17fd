"""The compiled media pass (meshpcap/decode/_media.c) against the numpy twin it accelerates.

Every input goes through ``rtp.batch_media`` twice, with the compiled helper and with
``rtp.batch_media_numpy``; every table must be alike (None for both, or the same arrays, dtypes
included).  The inputs are generated batches (each framing over UDP, STUN over UDP and TCP, bare and
behind a length, then cut short or followed by random bytes, or random bytes alone, with captured lengths
that may stop anywhere inside them, random transports, TCP flags, groups and sides; payloads at random
offsets into random bytes), the samples' batches,
the bench captures when they are made and, when ../shared is there, its captures with RTP, STUN and TURN,
through the whole per-batch media pass (``flows.media.extract``)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.capture import open_capture
from meshpcap.decode import rtp as R
from meshpcap.flows import media as M
from meshpcap.pipeline import _decode
from tests.conftest import REPO, SAMPLES, SHARED_CAPTURES
from tests.media_builders import channel_data, ms_multiplex, rtcp_sr, rtp, send_indication

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.decode import _media as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None or getattr(COMPILED, "ABI", None) != R.MEDIA_ABI,
                               reason="the compiled media pass is not built (no C compiler?)")

UDP, TCP, ICMP = R.PROTO_UDP, R.PROTO_TCP, 1
SYN, ACK = R.TCP_SYN, R.TCP_ACK
VECTOR = bytes.fromhex("80 ef 1234 00010203 deadbeef") + b"opus"
STUN_REQ = bytes.fromhex("0001 0000 2112a442") + b"\x01" * 12
STUN_OK = bytes.fromhex("0101 0000 2112a442") + bytes(range(12))
SEEDS = [VECTOR, channel_data(0x4001, VECTOR), send_indication(VECTOR), ms_multiplex(VECTOR), rtcp_sr(9),
         rtp(96, 1, 2, 3, csrc=(4, 5), ext=b"\x00" * 8, pad=3), channel_data(0x4002, rtcp_sr(4)), STUN_REQ,
         send_indication(rtcp_sr(2)), b"\x16\xfe\xfd" + b"\x00" * 30, STUN_OK, struct.pack("!H", 20) + STUN_REQ]


def _run(compiled: bool, *args) -> R.BatchMedia:
    saved = R.MEDIA
    try:
        R.MEDIA = COMPILED if compiled else None
        return R.batch_media(*args)
    finally:
        R.MEDIA = saved


def _alike(data, payloads_at, caps, proto, flags, group, side=None, at=None) -> R.BatchMedia:
    """Both ways over packets with payloads at ``payloads_at`` (captured ``caps``), one row each (or the rows
    ``at``), in groups ``group`` (per row)."""
    n = len(payloads_at)
    at = np.arange(n, dtype=np.int64) if at is None else np.asarray(at, np.int64)
    group = np.asarray(group, np.int64)
    side = (np.arange(at.size) % 3 == 0) if side is None else np.asarray(side, bool)
    args = (data, at, np.asarray(proto, np.int64), group, side, np.argsort(group, kind="stable"),
            np.asarray(payloads_at, np.int64), np.asarray(caps, np.int64), np.asarray(flags, np.int16),
            np.arange(n, dtype=np.int64) * 1000 + 7)
    fast, slow = _run(True, *args), _run(False, *args)
    for name, a, b in zip(R.BatchMedia._fields, fast, slow):
        assert (a is None) == (b is None), name
        for j, (x, y) in enumerate(zip(a or (), b or ())):
            assert x.dtype == y.dtype and x.shape == y.shape, (name, j)
            assert np.array_equal(x, y), (name, j)
    return fast


def _batch(payloads):
    data = b"".join(payloads)
    return data, np.cumsum([0] + [len(p) for p in payloads[:-1]]).astype(np.int64), [len(p) for p in payloads]


@needs_ext
def test_every_framing_is_found_alike():
    data, pos, cap = _batch(SEEDS)
    n = len(SEEDS)
    got = _alike(data, pos, cap, [UDP] * n, [0] * n, range(n))
    group, side, ns, kind, framing = got.rtp[:5]
    assert group.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]  # not the STUN messages, nor DTLS
    assert framing.tolist() == [R.F_DIRECT, R.F_CHANNEL, R.F_INDICATION, R.F_MS_MULTIPLEX, R.F_DIRECT,
                                R.F_DIRECT, R.F_CHANNEL, R.F_INDICATION]
    assert kind.tolist() == [R.K_RTP] * 4 + [R.K_RTCP, R.K_RTP, R.K_RTCP, R.K_RTCP]
    assert ns.tolist() == [k * 1000 + 7 for k in group.tolist()]
    stun_group, _, _, cls, method, t0, t1, t2 = got.stun
    assert stun_group.tolist() == [7, 10] and cls.tolist() == [0, 2] and method.tolist() == [1, 1]  # no indication
    assert (t0[1], t1[1], t2[1]) == struct.unpack("!III", bytes(range(12)))
    assert got.syn is None and got.tcp_first is None


@needs_ext
def test_tcp_syns_and_each_groups_first_payload():
    """Over TCP: every SYN; of each group only its first packet with payload is looked at."""
    payloads = [b"", STUN_REQ, VECTOR, struct.pack("!H", 20) + STUN_REQ, STUN_REQ, b"", STUN_REQ]
    data, pos, cap = _batch(payloads)
    group = [0, 0, 1, 2, 1, 3, 3]
    flags = [SYN, ACK, ACK, ACK, ACK, SYN | ACK, ACK]
    got = _alike(data, pos, cap, [TCP] * len(payloads), flags, group)
    assert got.syn[0].tolist() == [0, 3] and got.syn[3].tolist() == [False, True]
    first, bare, pref = got.tcp_first
    assert first.tolist() == [0, 1, 2, 3] and bare.tolist() == [True, False, False, True]
    assert pref.tolist() == [False, False, True, False]
    assert got.rtp is None and got.stun is None  # RTP and STUN rows come from UDP only


def _indication_after(others: int) -> bytes:
    """A Send indication whose DATA attribute comes after ``others`` other attributes (odd lengths: padded)."""
    body = b"".join(struct.pack("!HH", 0x8022, 3) + b"abc\x00" for _ in range(others))
    body += struct.pack("!HH", 0x0013, len(VECTOR)) + VECTOR
    return struct.pack("!HHI", 0x0016, len(body), 0x2112A442) + b"\x02" * 12 + body


@needs_ext
def test_data_is_looked_for_among_the_first_twelve_attributes():
    payloads = [_indication_after(k) for k in (0, 1, 10, 11, 12, 20)]
    data, pos, cap = _batch(payloads)
    got = _alike(data, pos, cap, [UDP] * 6, [0] * 6, range(6))
    assert got.rtp[0].tolist() == [0, 1, 2, 3]  # DATA as the twelfth attribute is found, as the thirteenth not


@needs_ext
def test_nothing_and_no_rows():
    assert _alike(b"", [], [], [], [], []) == (None, None, None, None)
    data, pos, cap = _batch([VECTOR, STUN_REQ])
    assert _alike(data, pos, cap, [ICMP, ICMP], [SYN, SYN], [0, 1]) == (None, None, None, None)


@needs_ext
def test_a_row_out_of_range_is_refused():
    data, pos, cap = _batch([VECTOR])
    with pytest.raises(ValueError):
        _alike(data, pos, cap, [UDP], [0], [0], at=[1])


@needs_ext
@pytest.mark.parametrize("proto", [UDP, TCP])
def test_every_captured_length_of_every_framing_alike(proto):
    """Each framing captured to every length from none to whole, with more bytes after it in the batch:
    each rule's boundary (a length that just fits or just does not) is met."""
    data = b"".join(SEEDS)
    starts = np.cumsum([0] + [len(p) for p in SEEDS[:-1]]).tolist()
    pos = [o for o, p in zip(starts, SEEDS) for _ in range(len(p) + 1)]
    cap = [k for p in SEEDS for k in range(len(p) + 1)]
    got = _alike(data, pos, cap, [proto] * len(pos), [SYN] * len(pos), range(len(pos)))
    assert (got.rtp if proto == UDP else got.tcp_first) is not None


@needs_ext
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SEEDS + [b""]), st.integers(0, 80), st.binary(max_size=40),
                          st.integers(0, 100), st.sampled_from([UDP, UDP, TCP, ICMP]),
                          st.sampled_from([0, SYN, SYN | ACK, ACK, 0x1FF]), st.integers(0, 4), st.booleans()),
                min_size=1, max_size=16),
       st.binary(max_size=8), st.booleans())
def test_damaged_and_random_payloads_alike(parts, tail, some_rows):
    """Each packet: a payload that is a framing cut at some byte, then random bytes, its captured length
    anywhere up to the end of the batch's bytes (as the decoder's never pass it); random transports, TCP
    flags, groups and sides; every packet a row, or only some."""
    payloads = [seed[:cut] + noise for seed, cut, noise, *_ in parts]
    data = b"".join(payloads) + tail
    pos = np.cumsum([0] + [len(p) for p in payloads[:-1]]).astype(np.int64)
    cap = [min(len(p) * share // 50, len(data) - int(o)) for p, o, (_, _, _, share, *_) in zip(payloads, pos, parts)]
    at = [i for i in range(len(parts)) if not some_rows or i % 2 == 0]
    proto = [parts[i][4] for i in at]
    group = [parts[i][6] for i in at]
    group = np.unique(group, return_inverse=True)[1].reshape(-1)  # 0 .. groups - 1, as the flow stage numbers them
    _alike(data, pos, cap, proto, [p[5] for p in parts], group, side=[parts[i][7] for i in at], at=at)


def _extract_alike(path, batch_bytes: int | None = 1 << 16) -> int:
    """The whole per-batch media pass with and without the compiled helper; rows of RTP/RTCP found."""
    found = 0
    with open_capture(path, **({} if batch_bytes is None else {"batch_bytes": batch_bytes})) as cap:
        for batch in cap.batches():
            d, grouped = _decode(batch)
            saved = R.MEDIA
            try:
                R.MEDIA = COMPILED
                fast = M.extract(batch, d, grouped)
                R.MEDIA = None
                slow = M.extract(batch, d, grouped)
            finally:
                R.MEDIA = saved
            for name in ("rtp", "stun", "syn", "tcp_first"):
                a, b = getattr(fast, name), getattr(slow, name)
                assert (a is None) == (b is None), name
                for x, y in zip(a or (), b or ()):
                    assert x.dtype == y.dtype and np.array_equal(x, y), name
            found += 0 if fast.rtp is None else fast.rtp[0].size
    return found


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_samples_extract_alike(sample):
    _extract_alike(SAMPLES / sample)


BENCH = REPO / "bench" / "out" / "synthetic-100000p-seed1-v1.pcap"


@needs_ext
@pytest.mark.skipif(not BENCH.is_file(), reason="the bench captures are not made (bench/gen.py)")
def test_bench_capture_extract_alike():
    assert _extract_alike(BENCH, None) > 10000


REAL = ["nDPI/teams.pcap", "nDPI/skype-conference-call.pcap", "nDPI/stun.pcap", "nDPI/stun_dtls_rtp.pcapng",
        "nDPI/stun_google_meet.pcapng", "nDPI/stun_signal.pcapng", "nDPI/stun_tcp_multiple_msgs_same_pkt.pcap",
        "nDPI/stun_msteams_unidir.pcapng", "arkime/stun.pcap", "zeek/tls/webrtc-stun.pcap"]


@needs_ext
@pytest.mark.skipif(not SHARED_CAPTURES.is_dir(), reason="../shared/captures is not here")
def test_real_captures_extract_alike():
    found = {name: _extract_alike(SHARED_CAPTURES / name) for name in REAL if (SHARED_CAPTURES / name).is_file()}
    assert found and sum(found.values()) > 100, found  # real media was compared, not only empty batches


@needs_ext
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=120), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6),
                                                               st.sampled_from([UDP, TCP]), st.integers(0, 2)),
                                                     min_size=1, max_size=12))
def test_random_bytes_at_random_offsets_alike(noise, packets):
    """Payloads anywhere in random bytes (overlapping, empty, at the very end), each captured up to the end."""
    data = b"".join(SEEDS[:3]) + noise
    pos = [a % (len(data) + 1) for a, *_ in packets]
    cap = [b % (len(data) - o + 1) for o, (_, b, *_) in zip(pos, packets)]
    group = np.unique([p[3] for p in packets], return_inverse=True)[1].reshape(-1)
    _alike(data, pos, cap, [p[2] for p in packets], [SYN] * len(packets), group)
