"""The reader's fast paths against its reference paths: the compiled record walker
(meshpcap/capture/_walk.c) against the Python walks, and mapped chunks of a plain file
(reader.MappedSource, kept on page boundaries) against chunks read into memory.

Every capture below is read with the fast paths and again without them (``accel.WALK =
None``, MESHPCAP_NO_MMAP=1); the packets (bytes, lengths, timestamps, interfaces) and what the
capture says about itself (records, truncation, drops, unknown blocks) must be identical."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap import settings as mp_settings
from meshpcap.capture import accel, open_capture
from meshpcap.capture.pcapng import MAX_BLOCK
from tests.capture import writers as w

COMPILED = accel.load() if not os.environ.get("MESHPCAP_PURE_PYTHON") else None
if COMPILED is None:  # MESHPCAP_PURE_PYTHON set, or no build: try the module itself
    try:
        from meshpcap.capture import _walk as COMPILED  # type: ignore[no-redef]
    except ImportError:
        COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled walker is not built (no C compiler?)")
TMP = Path()  # the module's scratch directory (pytest's, removed with its old runs): see _scratch


@pytest.fixture(scope="module", autouse=True)
def _scratch(tmp_path_factory):
    global TMP
    TMP = tmp_path_factory.mktemp("walk")


def _read(data: bytes, walk, batch_bytes: int, name: str = "f.cap", mapped: bool = True) -> tuple:
    path = TMP / name
    path.write_bytes(data)
    saved = accel.WALK
    accel.WALK = walk
    try:
        with mp_settings.override(no_mmap=not mapped), open_capture(path, batch_bytes=batch_bytes) as cap:
            cols = []
            for b in cap.batches():
                cols.append((b.first_record, b.offset.tolist(), b.caplen.tolist(), b.origlen.tolist(),
                             b.ts_ns.tolist(), b.linktype.tolist(), b.interface.tolist(),
                             [bytes(b.data[o:o + c]) for o, c in zip(b.offset.tolist(), b.caplen.tolist())]))
            info = cap.info.to_dict()
    finally:
        accel.WALK = saved
    # packets by content: where chunks begin differs between the paths, so offsets and batch
    # boundaries may too
    packets = [p for c in cols for p in zip(c[7], c[2], c[3], c[4], c[5], c[6])]
    return packets, info


def _same(data: bytes, batch_bytes: int = 1 << 16) -> tuple:
    fast = _read(data, COMPILED, batch_bytes)
    slow = _read(data, None, batch_bytes, mapped=False)
    assert fast == slow
    if COMPILED is not None:  # each fast path alone, too
        assert _read(data, None, batch_bytes) == slow
        assert _read(data, COMPILED, batch_bytes, mapped=False) == slow
    return fast


# ---------------------------------------------------------------- classic pcap
record = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999), st.binary(max_size=90))


@needs_ext
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record, max_size=40), order=st.sampled_from("<>"), nano=st.booleans(),
       version=st.sampled_from([(2, 4), (2, 3), (2, 2)]), cut=st.integers(0, 64), damage=st.integers(-1, 39),
       batch_bytes=st.sampled_from([64, 200, 4096, 1 << 16]))
def test_pcap_same_records_either_way(records, order, nano, version, cut, damage, batch_bytes):
    data = bytearray(w.pcap(records, order=order, nano=nano, version=version, snaplen=100))
    if 0 <= damage < len(records):  # one record claims far more than the snapshot length allows
        at = 24 + sum(16 + len(r[2]) for r in records[:damage]) + 8
        data[at:at + 4] = struct.pack(order + "I", 0x0100_0000)
    if cut:
        data = data[:-cut] if cut < len(data) - 24 else data[:24]
    _same(bytes(data), batch_bytes)


@needs_ext
def test_pcap_modified_format_and_large_batches():
    """Kuznetzov's 24-byte record headers, and a file walked in a single batch."""
    recs = [(i, i, bytes([i % 256]) * (i % 50)) for i in range(300)]
    body = w.pcap(recs)
    # rewrite as 0xA1B2CD34 with 8 more header bytes per record
    out = bytearray(b"\x34\xcd\xb2\xa1" + body[4:24])
    pos = 24
    for r in recs:
        out += body[pos:pos + 16] + b"\0" * 8 + r[2]
        pos += 16 + len(r[2])
    packets, info = _same(bytes(out), 1 << 20)
    assert info["packets"] == 300 and info["truncated"] is None
    assert len(packets) == 300


@needs_ext
def test_pcap_records_stops_where_the_python_loop_stops():
    data = w.pcap([(1, 2, b"abc"), (3, 4, b"defg")])
    out, words = np.empty(8, np.int64), np.empty((8, 4), np.uint32)

    def walk(buf, limit=1000, slots=8):
        return COMPILED.pcap_records(buf, 24, 16, 0, 0, limit, out[:slots], words[:slots])

    k, pos = walk(data)
    assert (k, pos, out[:k].tolist()) == (2, len(data), [24, 43])
    assert words[:2].tolist() == [[1, 2, 3, 3], [3, 4, 4, 4]]  # ts_sec, ts_frac, incl_len, orig_len
    # a record over the limit stops the walk before it
    assert walk(data, limit=3) == (1, 43)
    # an incomplete record, and a header cut before its length field
    assert walk(data[:-1]) == (1, 43)
    assert walk(data[:43 + 11]) == (1, 43)
    # a full output buffer stops it too
    assert walk(data, slots=1) == (1, 43)
    with pytest.raises(ValueError):
        COMPILED.pcap_records(data, 24, 16, 0, 0, 1000, bytearray(7), bytearray(14))
    with pytest.raises(ValueError):  # fields must have four words per offset
        COMPILED.pcap_records(data, 24, 16, 0, 0, 1000, out, words[:7])
    with pytest.raises(TypeError):
        COMPILED.pcap_records(data, 24, 16, 0, 0, 1000, b"read-only", words)


# ---------------------------------------------------------------- pcapng
def _blocks(order: str, kinds: list[int], payloads: list[bytes]) -> bytes:
    """A section of ``order`` with two interfaces and blocks of the given kinds."""
    out = [w.shb(order), w.idb(order, 1, tsresol=9), w.idb(order, 101, tsresol=0x83)]
    for i, (kind, pay) in enumerate(zip(kinds, payloads)):
        if kind == 0:
            out.append(w.epb(order, i % 2, 1_700_000_000_000_000_000 + i, pay))
        elif kind == 1:
            out.append(w.spb(order, pay))
        elif kind == 2:
            out.append(w.opb(order, 0, 5 + i, pay))
        elif kind == 3:
            out.append(w.isb(order, 1, i, ifdrop=i))
        elif kind == 4:
            out.append(w.block(order, 0x0BAD_F00D, pay))  # unknown: skipped and counted
        elif kind == 5:  # an EPB naming an interface the section lacks
            out.append(w.epb(order, 7, i, pay))
        elif kind == 6:  # an EPB whose captured length overruns the block
            blk = bytearray(w.epb(order, 0, i, pay))
            blk[20:24] = struct.pack(order + "I", len(pay) + 8)
            out.append(bytes(blk))
        elif kind == 7:  # trailing length differs
            blk = bytearray(w.epb(order, 0, i, pay))
            blk[-4:] = struct.pack(order + "I", len(blk) + 4)
            out.append(bytes(blk))
        elif kind == 8:  # a new section, in the other byte order
            other = ">" if order == "<" else "<"
            out += [w.shb(other), w.idb(other, 113), w.epb(other, 0, i, pay)]
        elif kind == 9:  # block length not a multiple of four
            blk = bytearray(w.epb(order, 0, i, pay))
            blk[4:8] = struct.pack(order + "I", len(blk) + 1)
            out.append(bytes(blk))
    return b"".join(out)


@needs_ext
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.sampled_from("<>"),
       kinds=st.lists(st.sampled_from([0] * 12 + [1, 2, 3, 4, 5, 6, 7, 8, 9]), max_size=40),
       payloads=st.lists(st.binary(max_size=70), min_size=40, max_size=40),
       cut=st.integers(0, 40), batch_bytes=st.sampled_from([64, 300, 4096, 1 << 16]))
def test_pcapng_same_blocks_either_way(order, kinds, payloads, cut, batch_bytes):
    data = _blocks(order, kinds, payloads)
    if cut:
        data = data[:max(len(data) - cut, 12)]
    _same(data, batch_bytes)


@needs_ext
def test_pcapng_epbs_stops_before_other_blocks():
    data = w.shb() + w.idb() + w.epb(data=b"abc") + w.epb(data=b"de") + w.spb(data=b"x") + w.epb(data=b"z")
    first = len(w.shb() + w.idb())
    out = np.empty(6 * 8, np.int64)
    k, pos = COMPILED.pcapng_epbs(data, first, 0, 1, 0, MAX_BLOCK, out)
    assert k == 2 and pos == first + len(w.epb(data=b"abc") + w.epb(data=b"de"))
    assert out[:6].tolist() == [first + 28, 0, 0, 0, 3, 3]
    # no interfaces yet: not even the first EPB is taken
    assert COMPILED.pcapng_epbs(data, first, 0, 0, 0, MAX_BLOCK, out) == (0, first)
    with pytest.raises(ValueError):
        COMPILED.pcapng_epbs(data, first, 0, 1, 0, MAX_BLOCK, np.empty(5, np.int64))

