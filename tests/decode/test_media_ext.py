"""The compiled RTP/RTCP finder (meshpcap/decode/_media.c) against the numpy twin it accelerates.

Every input goes through ``rtp.media_rows`` twice, with the compiled helper and with
``rtp.media_rows_numpy``; every array must be identical, dtypes included.  The inputs are generated
payloads (each framing, then cut short or followed by random bytes, or random bytes alone, with captured
lengths that may stop anywhere inside them), the samples' batches and, when ../shared is there, its
captures with RTP, STUN and TURN, through the whole per-batch media pass (``flows.media.extract``)."""

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
from tests.conftest import SAMPLES, SHARED_CAPTURES
from tests.media_builders import channel_data, ms_multiplex, rtcp_sr, rtp, send_indication

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.decode import _media as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled media finder is not built (no C compiler?)")

VECTOR = bytes.fromhex("80 ef 1234 00010203 deadbeef") + b"opus"
STUN_REQ = bytes.fromhex("0001 0000 2112a442") + b"\x01" * 12
SEEDS = [VECTOR, channel_data(0x4001, VECTOR), send_indication(VECTOR), ms_multiplex(VECTOR), rtcp_sr(9),
         rtp(96, 1, 2, 3, csrc=(4, 5), ext=b"\x00" * 8, pad=3), channel_data(0x4002, rtcp_sr(4)), STUN_REQ,
         send_indication(rtcp_sr(2)), b"\x16\xfe\xfd" + b"\x00" * 30]


def _rows(data, pos, cap, compiled):
    saved = R.MEDIA
    try:
        R.MEDIA = COMPILED if compiled else None
        return R.media_rows(data, pos, cap)
    finally:
        R.MEDIA = saved


def _alike(data, pos, cap) -> R.MediaRows:
    fast, slow = _rows(data, pos, cap, True), _rows(data, pos, cap, False)
    for name, a, b in zip(R.MediaRows._fields, fast, slow):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), name
    return fast


@needs_ext
def test_every_framing_is_found_alike():
    data = b"".join(SEEDS)
    pos = np.cumsum([0] + [len(p) for p in SEEDS[:-1]]).astype(np.int64)
    cap = np.array([len(p) for p in SEEDS], np.int64)
    got = _alike(data, pos, cap)
    assert got.row.tolist() == [0, 1, 2, 3, 4, 5, 6, 8]  # not the STUN request, nor DTLS
    assert got.framing.tolist() == [R.F_DIRECT, R.F_CHANNEL, R.F_INDICATION, R.F_MS_MULTIPLEX, R.F_DIRECT,
                                    R.F_DIRECT, R.F_CHANNEL, R.F_INDICATION]
    assert got.kind.tolist() == [R.K_RTP] * 4 + [R.K_RTCP, R.K_RTP, R.K_RTCP, R.K_RTCP]
    assert got.stun.tolist() == [2, 7, 8]  # first byte 0-3 and 20 bytes: the indications and the request


def _indication_after(others: int) -> bytes:
    """A Send indication whose DATA attribute comes after ``others`` other attributes (odd lengths: padded)."""
    body = b"".join(struct.pack("!HH", 0x8022, 3) + b"abc\x00" for _ in range(others))
    body += struct.pack("!HH", 0x0013, len(VECTOR)) + VECTOR
    return struct.pack("!HHI", 0x0016, len(body), 0x2112A442) + b"\x02" * 12 + body


@needs_ext
def test_data_is_looked_for_among_the_first_twelve_attributes():
    payloads = [_indication_after(k) for k in (0, 1, 10, 11, 12, 20)]
    data = b"".join(payloads)
    pos = np.cumsum([0] + [len(p) for p in payloads[:-1]]).astype(np.int64)
    got = _alike(data, pos, np.array([len(p) for p in payloads], np.int64))
    assert got.row.tolist() == [0, 1, 2, 3]  # DATA as the twelfth attribute is found, as the thirteenth not


@needs_ext
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(SEEDS + [b""]), st.integers(0, 80), st.binary(max_size=40),
                          st.integers(0, 100)), min_size=1, max_size=12), st.binary(max_size=8))
def test_damaged_and_random_payloads_alike(parts, tail):
    """Each payload: a framing cut at some byte, then random bytes; its captured length anywhere up to
    the end of the batch's bytes (as the decoder's never pass it)."""
    payloads = [seed[:cut] + noise for seed, cut, noise, _ in parts]
    data = b"".join(payloads) + tail
    pos = np.cumsum([0] + [len(p) for p in payloads[:-1]]).astype(np.int64)
    cap = np.array([min(len(p) * share // 50, len(data) - int(o)) for p, o, (*_, share) in zip(payloads, pos, parts)],
                   np.int64)
    _alike(data, pos, cap)


def _extract_alike(path) -> int:
    """The whole per-batch media pass with and without the compiled finder; rows of RTP/RTCP found."""
    found = 0
    with open_capture(path, batch_bytes=1 << 16) as cap:
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


REAL = ["nDPI/teams.pcap", "nDPI/skype-conference-call.pcap", "nDPI/stun.pcap", "nDPI/stun_dtls_rtp.pcapng",
        "nDPI/stun_google_meet.pcapng", "nDPI/stun_signal.pcapng", "nDPI/stun_tcp_multiple_msgs_same_pkt.pcap",
        "nDPI/stun_msteams_unidir.pcapng", "arkime/stun.pcap", "zeek/tls/webrtc-stun.pcap"]


@needs_ext
@pytest.mark.skipif(not SHARED_CAPTURES.is_dir(), reason="../shared/captures is not here")
def test_real_captures_extract_alike():
    found = {name: _extract_alike(SHARED_CAPTURES / name) for name in REAL if (SHARED_CAPTURES / name).is_file()}
    assert found and sum(found.values()) > 100, found  # real media was compared, not only empty batches
