"""RTP/RTCP headers and the media framings (meshpcap.decode.rtp): hex vectors, the columnar twin against
the one-packet parser, TCP framing, and a fuzzer that may only see a record, NeedMore or DecodeError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.decode import rtp as R
from meshpcap.decode.buffer import DecodeError, NeedMore
from tests.media_builders import channel_data, ms_multiplex, rtcp_sr, rtp, send_indication

# RFC 3550 section 5.1: V=2 P=0 X=0 CC=0 | M=1 PT=111 | seq 0x1234 | ts 0x00010203 | SSRC 0xDEADBEEF | payload
VECTOR = bytes.fromhex("80 ef 1234 00010203 deadbeef") + b"opus"


def test_fixed_header_vector():
    h = R.parse_rtp(VECTOR)
    assert (h.version, h.marker, h.payload_type, h.sequence, h.timestamp, h.ssrc) == (2, True, 111, 0x1234,
                                                                                      0x00010203, 0xDEADBEEF)
    assert (h.csrc_count, h.header_len, h.payload_len, h.padding, h.extension) == (0, 12, 4, False, False)


def test_csrc_extension_and_padding():
    # RFC 3550 5.3.1: 2 CSRCs, a one-word extension, 3 bytes of padding (the last byte counts itself)
    data = rtp(96, 7, 9, 1, payload=b"abcde", csrc=(11, 12), ext=b"\x10\xaa\x00\x00", pad=3)
    h = R.parse_rtp(data)
    assert (h.csrc_count, h.extension, h.padding) == (2, True, True)
    assert h.header_len == 12 + 8 + 4 + 4
    assert h.payload_len == 5


@pytest.mark.parametrize("data, error", [
    (b"", NeedMore),
    (bytes.fromhex("40 00"), DecodeError),  # version 1
    (VECTOR[:11], NeedMore),
    (rtp(0, 1, 1, 1, csrc=(1, 2, 3))[:20], NeedMore),  # CSRC list cut
    (bytes.fromhex("a0 00 0001 00000001 00000001 00"), DecodeError),  # padding count 0
    (bytes.fromhex("a0 00 0001 00000001 00000001 0009"), DecodeError),  # padding longer than the payload
    (bytes.fromhex("80 c8 0006 00000001 00000000"), DecodeError),  # RTCP SR (RFC 5761: 200 is RTCP)
])
def test_bad_rtp(data, error):
    with pytest.raises(error):
        R.parse_rtp(data)
    if error is DecodeError:
        with pytest.raises(DecodeError) as exc:
            R.parse_rtp(data)
        assert not isinstance(exc.value, NeedMore)


def test_rtcp_header():
    c = R.parse_rtcp(rtcp_sr(0xCAFEBABE))
    assert (c.packet_type, c.count, c.length, c.ssrc) == (200, 0, 28, 0xCAFEBABE)
    with pytest.raises(DecodeError):
        R.parse_rtcp(VECTOR)
    with pytest.raises(NeedMore):
        R.parse_rtcp(rtcp_sr(1)[:7])


def test_rfc5761_second_byte():
    assert [R.is_rtcp(b) for b in (191, 192, 200, 223, 224)] == [False, True, True, True, False]


@pytest.mark.parametrize("wrap, framing", [
    (lambda d: d, R.F_DIRECT),
    (lambda d: channel_data(0x4001, d), R.F_CHANNEL),
    (lambda d: channel_data(0x4001, d, pad=True), R.F_CHANNEL),  # padding after the length is not media
    (lambda d: send_indication(d), R.F_INDICATION),
    (lambda d: send_indication(d, method_class=0x0017), R.F_INDICATION),
    (lambda d: ms_multiplex(d), R.F_MS_MULTIPLEX),
])
def test_unwrap(wrap, framing):
    inner, fr = R.unwrap(wrap(VECTOR))
    assert (inner, fr) == (VECTOR, framing)


def test_unwrap_not_media():
    assert R.unwrap(bytes.fromhex("16 fefd") + b"\x00" * 20) == (b"", R.F_NONE)  # DTLS (RFC 7983: 20-63)
    binding = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"\x00" * 12
    assert R.unwrap(binding) == (b"", R.F_NONE)  # STUN without DATA
    with pytest.raises(NeedMore):
        R.unwrap(channel_data(0x4001, VECTOR)[:-1])
    with pytest.raises(NeedMore):
        R.unwrap(send_indication(VECTOR)[:-4])


def _frames(payloads: list[bytes]):
    data = b"".join(payloads)
    pos = np.cumsum([0] + [len(p) for p in payloads[:-1]]).astype(np.int64)
    cap = np.array([len(p) for p in payloads], np.int64)
    return R.gather(data), pos, cap


def _one(p: bytes):
    """What the one-packet parsers say: (framing, kind, pt, seq, ts, ssrc, payload_len) or None."""
    try:
        inner, fr = R.unwrap(p)
    except DecodeError:
        return None
    if fr == R.F_NONE:
        return None
    try:
        h = R.parse_rtp(inner)
        return (fr, R.K_RTP, h.payload_type, h.sequence, h.timestamp, h.ssrc, h.payload_len)
    except DecodeError:
        pass
    try:
        c = R.parse_rtcp(inner)
        return (fr, R.K_RTCP, c.packet_type, None, None, c.ssrc, 0)
    except DecodeError:
        return None


def _columnar(payloads: list[bytes]):
    buf, pos, cap = _frames(payloads)
    ipos, icap, fr = R.media_offsets(buf, pos, cap)
    # the first words handed in (as the media pass does) or read there: the same offsets
    for a, b in zip((ipos, icap, fr), R.media_offsets(buf, pos, cap, word=buf.u32(pos))):
        assert np.array_equal(a, b)
    cols = R.rtp_columns(buf, ipos, icap)
    out = []
    for i in range(len(payloads)):
        k = int(cols["kind"][i])
        if fr[i] == R.F_NONE or k == R.K_NONE:
            out.append(None)
        elif k == R.K_RTP:
            out.append((int(fr[i]), k, int(cols["payload_type"][i]), int(cols["sequence"][i]),
                        int(cols["timestamp"][i]), int(cols["ssrc"][i]), int(cols["payload_len"][i])))
        else:
            out.append((int(fr[i]), k, int(cols["payload_type"][i]), None, None, int(cols["ssrc"][i]), 0))
    return out


def test_columnar_twin_agrees_on_every_framing():
    payloads = [VECTOR, channel_data(0x4002, VECTOR), send_indication(VECTOR), ms_multiplex(VECTOR),
                rtcp_sr(5), channel_data(0x4003, rtcp_sr(6)), rtp(96, 1, 2, 3, csrc=(4,), ext=b"\x00" * 8, pad=2),
                b"\x16\xfe\xfd" + b"\x00" * 30, b"\x00\x01\x00\x00" + struct.pack("!I", 0x2112A442) + b"\x00" * 12]
    assert _columnar(payloads) == [_one(p) for p in payloads]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=8), st.data())
def test_fuzz_parsers_and_twin(blobs, data):
    """Random and damaged packets: the parsers give a record, NeedMore or DecodeError only, and the
    columnar twin says the same as the one-packet parsers for every packet."""
    seeds = [VECTOR, channel_data(0x4001, VECTOR), send_indication(VECTOR), ms_multiplex(VECTOR), rtcp_sr(9)]
    payloads = []
    for b in blobs:
        base = data.draw(st.sampled_from(seeds))
        cut = data.draw(st.integers(0, len(base)))
        payloads.append((base[:cut] + b) if data.draw(st.booleans()) else b)
    for p in payloads:
        for fn in (R.parse_rtp, R.parse_rtcp, R.unwrap):
            try:
                fn(p)
            except DecodeError:
                pass
        try:
            R.split_tcp(p, data.draw(st.booleans()))
        except DecodeError:
            pass
    assert _columnar(payloads) == [_one(p) for p in payloads]


def test_split_tcp_both_framings():
    stun = struct.pack("!HHI", 0x0101, 0, 0x2112A442) + b"\x00" * 12
    frames = [stun, channel_data(0x4001, VECTOR), ms_multiplex(VECTOR)]
    bare = stun + channel_data(0x4001, VECTOR, pad=True) + ms_multiplex(VECTOR)
    got, used = R.split_tcp(bare + b"\x40", prefixed=False)
    assert got == frames and used == len(bare)
    # RFC 4571: a 16-bit length before each frame, and then RTP may travel bare
    prefixed = b"".join(struct.pack("!H", len(f)) + f for f in frames + [VECTOR])
    got, used = R.split_tcp(prefixed + b"\x00", prefixed=True)
    assert got == frames + [VECTOR] and used == len(prefixed)
    with pytest.raises(DecodeError):
        R.split_tcp(b"\x99" * 8, prefixed=False)
