"""Reading a large plain capture in two processes: a forked child walks the file (and runs the
caller's per-batch ``work``) while this process uses the batches.

The child walks its own descriptor of the file in page-aligned, mapped chunks and sends each
batch's columns, what ``work`` returned and the walker's state after the batch through a pipe
(pickled, arrays out of band).  The arrays go through a ring of memory both processes share
(:class:`_RingWriter`): the child's one copy instead of the pipe's two in the kernel, which also
held the child on the pipe's lock while this process read.  Here the batch's arrays are views of
the ring (:func:`_ring_views`), and a byte back on a second pipe releases a message's room once
the caller asks for the next batch: a consumer copies what it keeps past its batch.  A message
too large for the ring, or any failure to make one, sends its arrays through the pipe as before.
This process maps the same chunk, so its batches hold the same records at the same offsets
(``batch.data`` is a read-only mmap whose slices are bytes).
Should the child die, the walker goes on in this process from the last batch reported, with
the state that came with it.

A walker taking part provides:

- ``child_items(source)``, in the child: ("batch", base, length, batch, state) per batch
  (``base`` and ``length``: the chunk of the file that ``batch.data`` is), then one
  ("end", end) item;
- ``parent_state(state)`` and ``parent_end(end)``: apply those here;
- ``resume(offset, state)``: the batches from file offset ``offset`` on, the walker's state
  being ``state`` (None: as before the first batch), walked in this process.
"""

from __future__ import annotations

import collections
import io
import mmap
import os
import pickle
import stat
import struct
import sys
from typing import Any, Callable, Iterator

import numpy as np

from meshpcap import _child, settings
from meshpcap.capture.source import Batch, FileGuard, MappedSource

PARALLEL_MIN_BYTES = 64 << 20  # smaller files are walked in one process (a fork costs more than it saves)

_MSG = struct.Struct("<BqqQQq")  # kind, chunk file offset, chunk length, out-of-band buffers, pickle bytes,
# where the buffers start in the ring (-1: they follow on the pipe)
_MSG_BATCH, _MSG_END = 1, 2
RING_BYTES = 8 << 20  # the shared ring, which a message's buffers may fill (a batch of the default 16 MiB sends
# about 3.5 MiB at 700-byte packets, 5.3 MiB at a Teams call's 450; a batch of tinier packets, through the pipe)
_ALIGN = 64  # each buffer starts on a cache line of the ring


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) & -_ALIGN


class _RingWriter:
    """The child's side of the shared ring: places each message's buffers one after the other, the
    messages in order around the ring; when there is no room it waits for this process to release the
    oldest message (a byte on ``back_fd`` per message, in the order they were sent)."""

    def __init__(self, mem: Any, back_fd: int) -> None:
        self.view = memoryview(mem).cast("B")
        self.size = len(self.view)
        self.back_fd = back_fd
        self.held: collections.deque[tuple[int, int]] = collections.deque()  # (start, end) not released yet

    def fits(self, total: int) -> bool:
        """Can a message of ``total`` bytes go through the ring?  Any that is not larger: once this process
        has released every earlier message (their headers are on the pipe already), it fits at the start."""
        return 0 < total <= self.size

    def place(self, views: list, total: int) -> int:
        """Copy ``views`` (``total`` bytes aligned, see :meth:`fits`) into the ring, waiting for room; where
        they start."""
        start = self._room(total)
        self.held.append((start, start + total))
        pos = start
        for v in views:
            n = v.nbytes
            self.view[pos:pos + n] = v
            pos += _aligned(n)
        return start

    def _room(self, total: int) -> int:
        while self.held:
            first, end = self.held[0][0], self.held[-1][1]
            if end > first:  # one span [first, end): room before it (the lowest, so that the ring's pages
                if total <= first:  # in use stay few), or after it
                    return 0
                if end + total <= self.size:
                    return end
            elif end + total <= first:  # wrapped: the room is [end, first)
                return end
            if not os.read(self.back_fd, 1):  # this process ended: the child ends too
                raise EOFError("the reading process is gone")
            self.held.popleft()
        return 0


def _shared_ring() -> mmap.mmap | None:
    """The ring both processes map (shared, anonymous: the child inherits it), or None."""
    try:
        return mmap.mmap(-1, RING_BYTES, flags=mmap.MAP_SHARED)
    except (OSError, ValueError, AttributeError):
        return None


def parallel_ok(walker: Any) -> bool:
    """Walk in a second process? Only a large plain file, safe to map, with a spare core."""
    source = walker.source
    if source.compression is not None or not _child.can_fork() or settings.get().no_mmap:
        return False
    try:
        st = os.fstat(source.raw.fileno())
    except (OSError, AttributeError, ValueError):
        return False
    if not (stat.S_ISREG(st.st_mode) and st.st_size >= max(PARALLEL_MIN_BYTES, 2 * walker.batch_bytes)):
        return False
    if source.guard is None:
        source.guard = FileGuard(source.raw.fileno(), source.size)
    return source.guard.mappable()  # both processes map the file: only while that is safe


def parallel_batches(walker: Any, work: Callable[[Batch], Any] | None,
                     idle: Callable[[], bool] | None = None, begin: bool = False) -> Iterator[Any]:
    """The walker's batches, or (batch, work(batch)) pairs with ``work``, walked in a child; while the
    child has not sent the next one, ``idle()`` is called until it returns False (see _child.fill_wait).
    With ``begin``, one None comes first, once the child is started (or could not be): the child walks
    on meanwhile, as far as the ring and the pipe hold its batches."""
    fd = walker.source.raw.fileno()
    guard = walker.source.guard
    info = walker.info
    resume, state = None, None  # file offset just past the last record reported, and the state there
    ended = False
    read = _child.read_exact
    ring = _shared_ring()
    with _child.beside(lambda wfd, back_fd: _walk_in_child(walker, wfd, work, ring, back_fd), pipe_bytes=1 << 20,
                       back=True) as channel:
        pipe, back_fd = channel if channel is not None else (None, -1)
        if begin:
            yield None
        held: list[tuple[int, int]] = []  # (start, length) in the ring of the messages the caller has the arrays of
        while pipe is not None:  # None: no child could be started, the walk is all done here
            if held:  # the caller is done with the last pair: its arrays' room goes back to the child
                _release(ring, held, back_fd)
            if idle is not None:
                _child.fill_wait(pipe, idle)  # the wait for the child (the slower on large captures) filled
            head = read(pipe, _MSG.size)
            if head is None:
                break
            kind, base, length, nbufs, nhead, at = _MSG.unpack(head)
            body = read(pipe, nhead)
            sizes = read(pipe, 8 * nbufs)
            if body is None or sizes is None:
                break
            sizes = struct.unpack(f"<{nbufs}Q", sizes)
            if at < 0:
                bufs = [_read_buffer(pipe, n) for n in sizes]
                if any(b is None for b in bufs):
                    break
            elif kind != _MSG_BATCH:  # the walker's state at the end, kept: copied out
                bufs = _take_from_ring(ring, at, sizes, back_fd)
            else:
                bufs = _ring_views(ring, at, sizes)
                held.append((at, sum(_aligned(n) for n in sizes)))
            if kind != _MSG_BATCH:
                walker.parent_end(pickle.loads(body, buffers=bufs))
                ended = True
                break
            offset, caplen, origlen, ts_ns, linktype, interface, result, new_state = pickle.loads(body, buffers=bufs)
            if not guard.mappable():  # the file is about to change: end the child, read on here
                break
            try:
                if base % mmap.ALLOCATIONGRANULARITY == 0:
                    data = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=base)
                    _populate(data)
                else:  # a chunk the walk could not align: copy it
                    data = os.pread(fd, length, base)
            except (OSError, ValueError):
                break
            if len(data) != length:
                break
            walker.parent_state(new_state)
            batch = Batch(data=data, offset=offset, caplen=caplen, origlen=origlen, ts_ns=ts_ns,
                          linktype=linktype, interface=interface, first_record=info.records)
            info._account(caplen, origlen, ts_ns)
            resume, state = base + int(offset[-1]) + int(caplen[-1]), new_state
            yield batch if work is None else (batch, result)
        if held:  # a message taken but not handed out (the loop left), or the last pair's, once the caller asked on
            _release(ring, held, back_fd)
    if not ended:  # the child failed: walk the rest here
        for batch in walker.resume(resume, state):
            yield batch if work is None else (batch, work(batch))


MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None)  # Linux 5.14


def _populate(chunk: mmap.mmap) -> None:
    """Map every page of a chunk the child has walked (so they are in the page cache) in one call, where
    the kernel knows it (MADV_POPULATE_READ): this process reads only the payloads the builder keeps,
    scattered over the chunk, and taking a fault for each run of them cost more (1M packets: the kept
    payloads' copies 70 -> 42 ms, the whole run 11-27 ms less).  A kernel without it, or a file cut
    meanwhile (EFAULT), leaves the pages to fault as before."""
    if MADV_POPULATE_READ is not None:
        try:
            chunk.madvise(MADV_POPULATE_READ)
        except (OSError, ValueError):
            pass


def _ring_views(ring: mmap.mmap, at: int, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """A batch message's buffers as arrays over the ring itself (no copy: at 1M packets 170 MB less written
    here, and less memory traffic for the walking child too); they stay valid until :func:`_release` gives
    their room back, when the caller asks for the next pair.  What a consumer keeps past its pair it
    copies (the media pass's rows, the duplicate search's tail keys): see ``Capture.batches_with``."""
    views = []
    for n in sizes:
        views.append(np.frombuffer(ring, np.uint8, n, at))
        at += _aligned(n)
    return views


POISON_RELEASED = False  # tests: overwrite each message's room before it is released (see _release)
_POISON = 0xA5


def _release(ring: mmap.mmap, held: list[tuple[int, int]], back_fd: int) -> None:
    """Give the room of the ``held`` messages back to the child, oldest first (one byte each), and empty
    ``held``.  With POISON_RELEASED their bytes are overwritten first, so that an array a consumer kept
    past its pair reads garbage and the two-process tests, which compare with one process's read, fail.
    After the child has ended nobody takes the release (EPIPE): no failure."""
    if POISON_RELEASED:
        for start, length in held:
            ring[start:start + length] = bytes([_POISON]) * length
    try:
        os.write(back_fd, b"\x01" * len(held))
    except OSError:
        pass
    held.clear()


def _take_from_ring(ring: mmap.mmap, at: int, sizes: tuple[int, ...], back_fd: int) -> list[np.ndarray]:
    """Copy a message's buffers out of the ring into new arrays of their own and release its room to the
    child (the end message's: the walker keeps the state it carries); after the child has ended, nobody is
    there to take the release (EPIPE), and that is no failure: its last messages are all here."""
    bufs = []
    with memoryview(ring) as view:
        for n in sizes:
            buf = np.empty(n, np.uint8)
            buf.data.cast("B")[:] = view[at:at + n]
            bufs.append(buf)
            at += _aligned(n)
    try:
        os.write(back_fd, b"\x01")
    except OSError:
        pass
    return bufs


def _read_buffer(pipe: Any, n: int) -> np.ndarray | None:
    """Exactly ``n`` bytes from the pipe into a new writable buffer, or None at its end: like
    ``_child.read_exact(pipe, n, writable=True)`` without zero-filling the buffer first (most of what
    crosses the pipe is these buffers)."""
    buf = np.empty(n, np.uint8)
    return buf if _child.fill(pipe, buf) else None


def _walk_in_child(walker: Any, wfd: int, work: Callable[[Batch], Any] | None, ring: mmap.mmap | None = None,
                   back_fd: int = -1) -> None:
    """In the forked child: walk the file on a descriptor of its own and report each batch (the arrays
    through ``ring`` where they fit, see :class:`_RingWriter`)."""
    raw = open(walker.info.path, "rb", buffering=0)
    size = os.fstat(raw.fileno()).st_size
    source = MappedSource(raw.fileno(), size, FileGuard(raw.fileno(), size))
    writer = None if ring is None else _RingWriter(ring, back_fd)

    def send(kind: int, base: int, length: int, obj: Any) -> None:
        bufs: list = []
        out = io.BytesIO()
        _ArrayPickler(out, protocol=5, buffer_callback=bufs.append).dump(obj)
        body = out.getbuffer()
        views = [b.raw() for b in bufs]
        total = sum(_aligned(v.nbytes) for v in views)
        at = writer.place(views, total) if writer is not None and writer.fits(total) else -1
        parts = [_MSG.pack(kind, base, length, len(views), len(body), at), body,
                 struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))]
        if at < 0:
            parts += views
        for part in parts:
            _child.write_all(wfd, part)

    for item in walker.child_items(source):
        if item[0] == "batch":
            _, base, length, b, state = item
            result = work(b) if work is not None else None
            send(_MSG_BATCH, base, length, (b.offset, b.caplen, b.origlen, b.ts_ns, b.linktype, b.interface,
                                            result, state))
        else:
            send(_MSG_END, 0, 0, item[1])
    os.close(wfd)


def _array_from(buf: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Rebuild an array sent by :class:`_ArrayPickler` (in the reading process)."""
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _array_full(dtype: str, shape: tuple[int, ...], value: int) -> np.ndarray:
    """Rebuild an integer array whose elements were all ``value``."""
    return np.full(shape, value, dtype=dtype)


CONSTANT_MIN = 512  # integer arrays of at least this many elements that hold one value cross as that value


def _constant(obj: np.ndarray) -> tuple | None:
    """An integer array whose elements are all one value (a batch's link type, interface, IP version,
    the upper half of IPv4 addresses...) as that value; None to send it as it is.  Narrowing the
    others to the smallest type that holds their span was measured too: it halved what crosses the
    pipe, but widening them again here cost this process (the one that sets the pace) more than
    reading them whole (1M packets: 0.1 s more)."""
    flat = obj.reshape(-1)
    lo = flat[0]
    # most arrays differ at their ends: one comparison instead of a pass and a mask (1M packets: 20 ms)
    if flat[-1] == lo and (flat == lo).all():
        return _array_full, (obj.dtype.str, obj.shape, int(lo))
    return None


class _ArrayPickler(pickle.Pickler):
    """Sends contiguous arrays out of band with their dtype as a string.

    numpy's own pickling rebuilds each dtype as a new, equal, object; ufunc.at and other
    paths then take a slow generic route (np.minimum.at ran 30 times slower on such arrays),
    while np.frombuffer with a dtype string gives numpy's canonical dtype objects."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.flags.c_contiguous and obj.dtype.names is None and not obj.dtype.hasobject:
            if obj.dtype.kind in "iu" and obj.size >= CONSTANT_MIN:
                const = _constant(obj)
                if const is not None:
                    return const
            return _array_from, (pickle.PickleBuffer(obj.reshape(-1)), obj.dtype.str, obj.shape)
        return NotImplemented
