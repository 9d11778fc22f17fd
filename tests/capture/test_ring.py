"""The shared ring the reading child puts each batch's arrays in (capture/parallel.py): a message never
lands on the room of one this process has not released yet, the arrays come back as they were sent,
and a message too large for the ring, no ring at all, or the child ending before this process has
released its last messages change nothing in what is read."""

from __future__ import annotations

import collections
import mmap
import os
import queue
import resource
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meshpcap.capture.parallel as parallel_mod
from meshpcap import _child
from meshpcap import settings as meshpcap_settings
from meshpcap.capture.parallel import _ALIGN, _aligned, _release, _ring_views, _RingWriter, _take_from_ring
from meshpcap.pipeline import read_flows
from tests.conftest import generated_capture

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or _child.cpus() < 2, reason="needs fork and two CPUs")


class _Releases:
    """The other side of the back pipe, in one process: releases the oldest messages on demand."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()

    def release(self, k: int = 1) -> None:
        os.write(self.w, b"\x01" * k)

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 300), min_size=1, max_size=3), min_size=1, max_size=40),
       st.lists(st.integers(0, 3), min_size=1, max_size=40))
def test_messages_never_overwrite_what_is_not_released(messages, lags):
    """The child's side in a thread, this process's side here: messages of random sizes, each released
    (oldest first, as parallel_batches does) only after a random number of later ones were placed, or
    when the writer waits for room.  Every message's bytes are intact when it is released, whatever the
    writer placed meanwhile; none is placed on one still held here (a region is free to the writer only
    after this side has taken it off ``held`` and released it); each starts aligned and ends inside."""
    ring = bytearray(1024)
    back = _Releases()
    placed: queue.Queue = queue.Queue()
    writer = _RingWriter(ring, back.r)

    def child():
        for n, sizes in enumerate(messages):
            views = [memoryview(bytes([(n * 7 + i) % 251 + 1]) * size) for i, size in enumerate(sizes)]
            total = sum(_aligned(v.nbytes) for v in views)
            if writer.fits(total):
                placed.put((writer.place(views, total), total, [bytes(v) for v in views]))
        placed.put(None)

    thread = threading.Thread(target=child, daemon=True)
    thread.start()
    try:
        held: collections.deque = collections.deque()
        n = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                item = placed.get(timeout=0.05)
            except queue.Empty:  # the writer may wait for room: release the oldest (or it is only slow)
                assert time.monotonic() < deadline and thread.is_alive(), "the writer stopped"
                if held:
                    _check_and_release(ring, held, back)
                continue
            if item is None:
                break
            at, total, payloads = item
            assert at % _ALIGN == 0 and at + total <= len(ring)
            for held_at, held_payloads in held:
                held_end = held_at + sum(_aligned(len(p)) for p in held_payloads)
                assert at + total <= held_at or held_end <= at, "placed on a message still held"
            held.append((at, payloads))
            while len(held) > lags[n % len(lags)]:
                _check_and_release(ring, held, back)
            n += 1
        while held:
            _check_and_release(ring, held, back)
        thread.join(5)
        assert not thread.is_alive()
    finally:
        back.close()


def _check_and_release(ring, held, back) -> None:
    at, payloads = held.popleft()
    for p in payloads:
        assert bytes(ring[at:at + len(p)]) == p, "a message not released yet was overwritten"
        at += _aligned(len(p))
    back.release()


def test_a_message_waits_for_the_release_it_needs():
    """With the ring full, the writer blocks on the back pipe until a release comes, then goes on."""
    ring = bytearray(1024)
    back = _Releases()
    try:
        writer = _RingWriter(ring, back.r)
        half = [memoryview(b"a" * 512)]
        assert writer.place(half, 512) == 0
        assert writer.place([memoryview(b"b" * 512)], 512) == 512
        back.release()  # the first message is released: the third goes where it was
        assert writer.place([memoryview(b"c" * 512)], 512) == 0
        assert bytes(ring[512:]) == b"b" * 512 and bytes(ring[:512]) == b"c" * 512
        # a message may fill the ring: it waits until every earlier one is released, then starts at 0
        assert writer.fits(1024) and not writer.fits(1025) and not writer.fits(0)
        back.release()  # the second one ("b"): room after the third
        assert writer.place([memoryview(b"d" * 256)], 256) == 512
        back.release(2)  # the third and the fourth: the ring is empty
        assert writer.place([memoryview(b"e" * 1024)], 1024) == 0 and len(writer.held) == 1
    finally:
        back.close()


def test_the_writer_ends_when_this_process_is_gone():
    ring = bytearray(1024)
    r, w = os.pipe()
    writer = _RingWriter(ring, r)
    writer.place([memoryview(b"x" * 512)], 512)
    writer.place([memoryview(b"y" * 512)], 512)
    os.close(w)
    try:
        with pytest.raises(EOFError):
            writer.place([memoryview(b"z" * 512)], 512)
    finally:
        os.close(r)


def test_arrays_come_out_as_their_own_copies():
    """The end message's buffers (the walker keeps its state) are new writable arrays with the bytes sent; a
    release is written."""
    ring = bytearray(4096)
    parts = [np.arange(10, dtype=np.int64).view(np.uint8), np.zeros(0, np.uint8), np.full(100, 7, np.uint8)]
    at = 128
    pos = at
    for p in parts:
        ring[pos:pos + p.nbytes] = p.tobytes()
        pos += _aligned(p.nbytes)
    r, w = os.pipe()
    try:
        got = _take_from_ring(ring, at, tuple(p.nbytes for p in parts), w)
        assert os.read(r, 16) == b"\x01"
    finally:
        os.close(r)
        os.close(w)
    ring[:] = bytes(len(ring))  # the ring's room is reused: the arrays taken keep their bytes
    for g, p in zip(got, parts):
        assert g.dtype == np.uint8 and g.flags.writeable and g.flags.owndata
        assert g.tobytes() == p.tobytes()
    # after the child has ended its end of the back pipe is closed: the release is dropped, the arrays come
    r, w = os.pipe()
    os.close(r)
    try:
        assert [g.tobytes() for g in _take_from_ring(ring, 0, (4,), w)] == [bytes(4)]
    finally:
        os.close(w)


@pytest.mark.parametrize("poison", [False, True])
def test_batch_arrays_are_the_ring_until_released(monkeypatch, poison):
    """A batch message's buffers are views of the ring (no copy); _release writes one byte per held message,
    oldest first, empties the list, and, in the tests' poison mode, overwrites their room first; a release
    the ended child cannot take is no error."""
    monkeypatch.setattr(parallel_mod, "POISON_RELEASED", poison)
    ring = mmap.mmap(-1, 4096)
    parts = [np.arange(10, dtype=np.int64).view(np.uint8), np.full(100, 7, np.uint8)]
    pos = at = 192
    for p in parts:
        ring[pos:pos + p.nbytes] = p.tobytes()
        pos += _aligned(p.nbytes)
    views = _ring_views(ring, at, tuple(p.nbytes for p in parts))
    assert [v.tobytes() for v in views] == [p.tobytes() for p in parts]
    ring[at] = 99  # the same memory
    assert views[0][0] == 99 and not views[0].flags.owndata
    held = [(0, 64), (at, pos - at)]
    r, w = os.pipe()
    try:
        _release(ring, held, w)
        assert os.read(r, 16) == b"\x01\x01" and held == []
    finally:
        os.close(r)
        os.close(w)
    if poison:
        assert set(ring[:64]) == set(ring[at:pos]) == {parallel_mod._POISON}
        assert set(views[1].tobytes()) == {parallel_mod._POISON}  # what a kept view would read
    else:
        assert views[1].tobytes() == parts[1].tobytes()
    r, w = os.pipe()
    os.close(r)
    try:
        held = [(0, 64)]
        _release(ring, held, w)  # EPIPE: dropped
        assert held == []
    finally:
        os.close(w)
    del views


def _doubled(src, dst):
    """``src`` (a classic pcap) with every record written twice, the copy a microsecond later: duplicates
    that the builder's search, and the media pass after it, must pair across batch boundaries too."""
    data = src.read_bytes()
    out = [data[:24]]
    pos = 24
    while pos + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, pos)
        body = data[pos + 16:pos + 16 + incl]
        out.append(data[pos:pos + 16] + body)
        later = struct.pack("<IIII", sec, usec + 1, incl, orig) if usec < 999_999 else data[pos:pos + 16]
        out.append(later + body)
        pos += 16 + incl
    dst.write_bytes(b"".join(out))
    return dst


@needs_fork
def test_no_consumer_keeps_a_batch_array_past_its_batch(capture_file, tmp_path, monkeypatch):
    """Each message's room is overwritten before it goes back to the child (POISON_RELEASED): a consumer that
    kept an array of a batch past it (the media pass's rows, the duplicate search's tail, anything to come)
    would read garbage.  On the generated capture (TLS, DNS, STUN, RTP) with every packet doubled, in
    batches of 64 KiB, the flows, media and analysis are the one-process read's."""
    from functools import partial

    import meshpcap.pipeline as pipeline
    from meshpcap.capture import open_capture

    doubled = _doubled(capture_file, tmp_path / "doubled.pcap")
    with meshpcap_settings.override(no_fork=True):
        serial = read_flows(doubled, batch_bytes=64 << 10, media=True)
        report = pipeline.analyze(doubled).to_json()
    assert serial.capture["duplicates_dropped"] > 1000 and len(serial.media.streams) > 3
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(parallel_mod, "POISON_RELEASED", True)
    viewed = []
    real_views = parallel_mod._ring_views
    monkeypatch.setattr(parallel_mod, "_ring_views", lambda *a: (viewed.append(1), real_views(*a))[1])
    assert read_flows(doubled, batch_bytes=64 << 10, media=True).to_dict() == serial.to_dict()
    assert len(viewed) > 10
    monkeypatch.setattr(pipeline, "open_capture", partial(open_capture, batch_bytes=64 << 10))
    assert pipeline.analyze(doubled).to_json() == report


@pytest.fixture(scope="module")
def capture_file(tmp_path_factory):
    return generated_capture(tmp_path_factory, "ring", 6000, 11)


def _serial(path):
    with meshpcap_settings.override(no_fork=True):
        return read_flows(path, batch_bytes=64 << 10, media=True).to_dict()


@needs_fork
@pytest.mark.parametrize("how", ["ring", "too large for the ring", "no ring"])
def test_the_two_process_read_gives_the_same_flows_every_way(capture_file, monkeypatch, how):
    """Through the ring, through the pipe (each message larger than half the ring), and without a ring:
    the same table as one process reads; the walk is never taken back here, though the child ends before
    this process has released its last messages (their releases then go nowhere)."""
    from meshpcap.capture.pcap import PcapWalker

    serial = _serial(capture_file)
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    if how == "too large for the ring":
        monkeypatch.setattr(parallel_mod, "RING_BYTES", 4096)
    elif how == "no ring":
        monkeypatch.setattr(parallel_mod, "_shared_ring", lambda: None)
    taken, piped, resumed = [], [], []
    real_take, real_read, real_resume = parallel_mod._ring_views, parallel_mod._read_buffer, PcapWalker.resume
    monkeypatch.setattr(parallel_mod, "_ring_views", lambda *a: (taken.append(1), real_take(*a))[1])
    monkeypatch.setattr(parallel_mod, "_read_buffer", lambda *a: (piped.append(1), real_read(*a))[1])
    monkeypatch.setattr(PcapWalker, "resume", lambda self, off, st: (resumed.append(off), real_resume(self, off, st))[1])
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(os, "fork", lambda: (forks.append(1), real_fork())[1])
    assert read_flows(capture_file, batch_bytes=64 << 10, media=True).to_dict() == serial
    assert forks and not resumed, "the walk was taken back into this process"
    if how == "ring":  # every batch's arrays came through the ring (a file of many batches of 64 KiB)
        assert len(taken) > 10 and not piped
    else:
        assert not taken and len(piped) > 10


def _faults_touching(m: mmap.mmap) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    _ = sum(m[i] for i in range(0, len(m), mmap.PAGESIZE))
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_populate_maps_a_chunk_at_once(tmp_path):
    """After _populate, reading a page of the chunk takes no fault (the kernel mapped them all in one call);
    without it, reading takes faults.  On a kernel without MADV_POPULATE_READ it changes nothing, and a file
    cut under the mapping is no error."""
    path = tmp_path / "chunk"
    path.write_bytes(os.urandom(64 * mmap.PAGESIZE))
    with open(path, "rb") as f:
        plain = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        assert _faults_touching(plain) > 0
        plain.close()
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            m.madvise(parallel_mod.MADV_POPULATE_READ)
        except (OSError, ValueError, TypeError):
            pytest.skip("this kernel has no MADV_POPULATE_READ")
        m.close()
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        parallel_mod._populate(m)
        assert _faults_touching(m) == 0
        m.close()
        cut = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        os.truncate(path, mmap.PAGESIZE)
        parallel_mod._populate(cut)  # EFAULT past the file's new end: ignored
        cut.close()
    monkey = parallel_mod.MADV_POPULATE_READ
    try:
        parallel_mod.MADV_POPULATE_READ = None
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            parallel_mod._populate(m)
            m.close()
    finally:
        parallel_mod.MADV_POPULATE_READ = monkey


@needs_fork
def test_the_two_process_read_populates_each_chunk(capture_file, monkeypatch):
    serial = _serial(capture_file)
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    populated = []
    real = parallel_mod._populate
    monkeypatch.setattr(parallel_mod, "_populate", lambda m: (populated.append(len(m)), real(m))[1])
    assert read_flows(capture_file, batch_bytes=64 << 10, media=True).to_dict() == serial
    assert len(populated) > 10
