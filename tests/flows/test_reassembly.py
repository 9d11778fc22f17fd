"""Unit tests of ``meshpcap.flows.naming.reassemble``: one TCP direction's byte stream from its segments."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.flows.engine import Evidence
from meshpcap.flows.naming import MAX_STREAM, reassemble

MOD = 1 << 32


def seg(seq: int, data: bytes, ns: int = 0) -> Evidence:
    return Evidence(record=ns, ns=ns, from_a=True, seq=seq % MOD, flags=0x18, data=data, wire_len=len(data))


def segments(isn: int, data: bytes, cuts: list[int]) -> list[Evidence]:
    """``data`` cut at ``cuts``, the first byte at sequence number isn + 1."""
    bounds = [0, *cuts, len(data)]
    return [seg(isn + 1 + a, data[a:b], i) for i, (a, b) in enumerate(zip(bounds, bounds[1:]))]


DATA = bytes(range(256)) * 8  # 2,048 distinct-ish bytes


def test_empty() -> None:
    assert reassemble([]) == (b"", False)
    assert reassemble([seg(5, b"")], isn=4) == (b"", False)


def test_in_order_with_and_without_isn() -> None:
    segs = segments(1000, DATA, [100, 1460])
    assert reassemble(segs, isn=1000) == (DATA, False)
    assert reassemble(segs) == (DATA, False)


def test_out_of_order() -> None:
    segs = segments(1000, DATA, [100, 700, 1460])
    random.Random(1).shuffle(segs)
    assert reassemble(segs, isn=1000) == (DATA, False)
    assert reassemble(segs) == (DATA, False)


def test_wraparound_at_2_32() -> None:
    isn = MOD - 300  # the stream crosses 2**32 after 299 bytes
    segs = segments(isn, DATA, [200, 400, 1000])
    assert segs[1].seq > segs[2].seq  # really wrapped
    assert reassemble(segs, isn=isn) == (DATA, False)
    assert reassemble(list(reversed(segs))) == (DATA, False)
    assert reassemble(list(reversed(segs)), isn=isn) == (DATA, False)


def test_isn_at_the_top_of_the_space() -> None:
    isn = MOD - 1  # the first data byte is sequence number 0
    segs = segments(isn, DATA, [10])
    assert segs[0].seq == 0
    assert reassemble(segs, isn=isn) == (DATA, False)


def test_retransmissions_and_overlaps() -> None:
    segs = segments(50, DATA, [500, 1000, 1500])
    extra = [
        seg(51, DATA[:500]),  # exact retransmission of the first segment
        seg(51 + 300, DATA[300:1200]),  # repacketised: overlaps two segments
        seg(51 + 1400, DATA[1400:1600]),  # overlaps the boundary 1500
    ]
    assert reassemble(segs + extra, isn=50) == (DATA, False)
    assert reassemble(extra[::-1] + segs) == (DATA, False)


def test_short_then_longer_segment_at_the_same_offset() -> None:
    segs = [seg(11, DATA[:100]), seg(11, DATA[:900]), seg(11 + 900, DATA[900:1000])]
    assert reassemble(segs, isn=10) == (DATA[:1000], False)


def test_gap_stops_the_stream() -> None:
    segs = segments(7, DATA, [500, 1000])
    del segs[1]  # bytes 500..999 were not captured
    assert reassemble(segs, isn=7) == (DATA[:500], True)
    assert reassemble(segs) == (DATA[:500], True)


def test_missing_first_segment_with_isn() -> None:
    """With the ISN known, a stream whose first bytes are missing has nothing contiguous."""
    segs = segments(7, DATA, [500])
    assert reassemble(segs[1:], isn=7) == (b"", True)
    assert reassemble(segs[1:]) == (DATA[500:], False)  # without it, the lowest sequence number starts the stream


def test_bytes_before_the_stream_start_are_cut() -> None:
    # a segment that starts before isn + 1 (e.g. data riding on a retransmitted SYN) is trimmed
    assert reassemble([seg(96, b"xxxx" + DATA[:100])], isn=99) == (DATA[:100], False)
    assert reassemble([seg(96, b"xxx")], isn=99) == (b"", False)


def test_data_on_the_syn() -> None:
    """TCP Fast Open (RFC 7413): the SYN's data starts at isn + 1, the SYN itself takes isn."""
    syn = Evidence(record=0, ns=0, from_a=True, seq=MOD - 1, flags=0x02, data=DATA[:100], wire_len=100)
    rest = seg(100 - 1 + 1, DATA[100:])  # next byte after the SYN's data: isn + 1 + 100, wrapped
    assert reassemble([syn, rest], isn=MOD - 1) == (DATA, False)
    assert reassemble([rest, syn]) == (DATA, False)


def test_limit() -> None:
    big = bytes(3 * MAX_STREAM)
    segs = [seg(1 + i, big[i : i + 1460]) for i in range(0, len(big), 1460)]
    out, gap = reassemble(segs, isn=0)
    assert len(out) == MAX_STREAM and not gap
    assert reassemble(segs, isn=0, limit=100) == (bytes(100), False)


@settings(max_examples=200, deadline=None)
@given(isn=st.integers(0, MOD - 1), cuts=st.lists(st.integers(1, len(DATA) - 1), max_size=8, unique=True),
       seed=st.integers(0, 2**16), dups=st.integers(0, 3), known=st.booleans())
def test_any_cut_order_and_duplicates(isn, cuts, seed, dups, known) -> None:
    segs = segments(isn, DATA, sorted(cuts))
    rng = random.Random(seed)
    segs += [rng.choice(segs) for _ in range(dups)]
    rng.shuffle(segs)
    assert reassemble(segs, isn=isn if known else None) == (DATA, False)


@settings(max_examples=300, deadline=None)
@given(isn=st.integers(0, MOD - 1), cuts=st.lists(st.integers(1, len(DATA) - 1), max_size=8, unique=True),
       shuffle=st.booleans(), drop=st.integers(-1, 8), syn=st.booleans(), known=st.booleans(),
       limit=st.sampled_from([MAX_STREAM, 1, 100, len(DATA) - 1]), shift=st.integers(-3, 3))
def test_in_order_shortcut_equals_the_general_path(isn, cuts, shuffle, drop, syn, known, limit, shift) -> None:
    """reassemble's shortcut for in-order contiguous segments gives what the general path gives."""
    from meshpcap.flows.naming import _reassemble_general

    segs = segments(isn, DATA, sorted(cuts))
    if 0 <= drop < len(segs):
        del segs[drop]  # a gap
    if shuffle:
        random.Random(isn).shuffle(segs)
    if syn and segs:  # data on a SYN (TCP Fast Open): one before the stream start
        first = segs[0]
        segs[0] = first._replace(seq=(first.seq - 1) % MOD, flags=0x02)
    hint = (isn + shift) % MOD if known else None
    if segs:
        assert reassemble(segs, isn=hint, limit=limit) == _reassemble_general(segs, hint, limit)
