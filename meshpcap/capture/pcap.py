"""Classic libpcap files (draft-ietf-opsawg-pcap): header check and a record-header walk per chunk."""

from __future__ import annotations

import io
import mmap
import os
import pickle
import stat
import struct
from array import array
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows, where there is no fork either
    fcntl = None  # type: ignore[assignment]

from meshpcap.capture import accel
from meshpcap.capture.linktypes import linktype_name
from meshpcap.capture.reader import Batch, CaptureInfo, MappedSource, Source, mapped_source

# draft-ietf-opsawg-pcap section 4: magic -> (byte order, ns per fraction unit, record header length).
# 0xA1B2CD34 is Alexey Kuznetzov's "modified" pcap whose record headers carry 8 more bytes.
MAGICS: dict[bytes, tuple[str, int, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16),
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24),
}

FILE_HEADER_LEN = 24
MAX_CAPLEN = 256 << 20  # a record claiming more than this is damage, not a packet
NORMAL_MAX_SNAPLEN = 262144  # libpcap's MAXIMUM_SNAPLEN
PARALLEL_MIN_BYTES = 64 << 20  # smaller files are walked in this process (a fork costs more than it saves)

_MSG = struct.Struct("<BqqQQ")  # kind, chunk file offset, chunk length, out-of-band buffers, pickle bytes
F_SETPIPE_SZ = 1031  # Linux fcntl
_MSG_BATCH, _MSG_END = 1, 2


class PcapWalker:
    """Validates the file header on construction; :meth:`batches` walks the records."""

    def __init__(self, source: Source, info: CaptureInfo, head: bytes, batch_bytes: int) -> None:
        if len(head) < FILE_HEADER_LEN:
            raise ValueError(f"file ends inside its pcap file header ({len(head)} of {FILE_HEADER_LEN} bytes)")
        order, self.frac_ns, self.rec_len = MAGICS[head[:4]]
        major, minor, _zone, _sigfigs, snaplen, linkfield = struct.unpack_from(order + "HHiIII", head, 4)
        if major != 2:
            raise ValueError(f"unsupported pcap version {major}.{minor} (only 2.x is defined)")
        # draft-ietf-opsawg-pcap section 4: the upper bits of LinkType carry FCS information;
        # the link type proper is the low 16 bits.
        self.linktype = linkfield & 0xFFFF
        # libpcap sf-pcap.c: before version 2.3 the record header held orig_len before incl_len;
        # 2.3 files may hold either order (the smaller one is the captured length).
        self.swapped = "yes" if minor < 3 else "maybe" if minor == 3 else "no"
        self.version = (major, minor)
        self.snaplen = snaplen
        self.limit = min(MAX_CAPLEN, max(snaplen, NORMAL_MAX_SNAPLEN))
        self.order = order
        self.source = source
        self.info = info
        self.rest = head[FILE_HEADER_LEN:]
        self.batch_bytes = batch_bytes
        info.format = "pcap"
        info.byte_order = "little" if order == "<" else "big"
        info.snaplen = snaplen
        info.sections = 1
        info.link_types = [self.linktype]
        info.interfaces = [
            {
                "index": 0,
                "linktype": self.linktype,
                "linktype_name": linktype_name(self.linktype),
                "name": None,
                "snaplen": snaplen,
                "tsresol_ns": self.frac_ns,
                "fcs_bits": linkfield >> 16,
            }
        ]

    def batches(self, work: Callable[[Batch], Any] | None = None) -> Iterator[Any]:
        """The batches in file order; with ``work``, (batch, work(batch)) pairs instead.

        A large plain file is walked (and ``work`` done) in a forked child; see
        :meth:`_batches_parallel`."""
        if self._parallel_ok():
            yield from self._batches_parallel(work)
            return
        mapped = mapped_source(self.source)
        if mapped is not None:  # chunks on page boundaries, so that each can be mapped
            items = self._walk(mapped, b"", 0, skip=FILE_HEADER_LEN, align=mmap.ALLOCATIONGRANULARITY)
        else:
            items = self._walk(self.source, self.rest, FILE_HEADER_LEN)
        for item in items:
            if item[0] == "batch":
                batch = self._batch(item[2], item[3], item[4])
                yield batch if work is None else (batch, work(batch))
            else:
                self._end(item)

    def _walk(self, source: Source, tail: bytes, base: int, skip: int = 0, align: int = 0) -> Iterator[tuple]:
        """Walk the record headers from ``tail[skip]``; ``base`` is the file offset of ``tail[0]``.

        Yields ("batch", base, data, offsets, fields) per chunk (offsets index ``data``, whose
        first byte is at file offset ``base``; fields are the record headers' four words when the
        compiled walk read them, else None), then one ("end", ...) item that :meth:`_end` turns
        into the capture's truncation note, if any.  With ``align``, every chunk after the
        first starts on a multiple of it (a few bytes already walked come first)."""
        hl, limit = self.rec_len, self.limit
        caplen_at = struct.Struct(self.order + "8xI").unpack_from  # incl_len, 8 bytes into the record
        len_end = 12
        if self.swapped == "yes":
            caplen_at = struct.Struct(self.order + "12xI").unpack_from
            len_end = 16
        elif self.swapped == "maybe":
            both = struct.Struct(self.order + "8xII").unpack_from

            def caplen_at(data: bytes, pos: int) -> tuple[int]:
                return (min(both(data, pos)),)

            len_end = 16
        struct_error = struct.error
        mode = {"no": 0, "yes": 1, "maybe": 2}[self.swapped]
        big = int(self.order == ">")
        want = self.batch_bytes
        while True:
            data = source.read_after(tail, want)
            n = len(data)
            pos = skip
            fast = accel.WALK
            fields = None
            if fast is not None:  # the same loop, compiled (_walk.c), which also reads the record headers
                room = max(n - pos, 0) // hl + 1
                out = np.empty(room, dtype=np.int64)
                words = np.empty((room, 4), dtype=np.uint32)
                k, pos = fast.pcap_records(data, pos, hl, mode, big, limit, out, words)
                offs, fields = out[:k], words[:k]
            else:
                offs = array("q")
                app = offs.append
                # The hot loop: one unpack per record, nothing allocated but the offset.
                try:
                    while True:
                        (incl,) = caplen_at(data, pos)
                        end = pos + hl + incl
                        if end > n or incl > limit:
                            break
                        app(pos)
                        pos = end
                except struct_error:
                    pass
            if len(offs):
                yield ("batch", base, data, offs, fields)
            rem = n - pos
            incl = caplen_at(data, pos)[0] if rem >= len_end else -1
            if incl > limit:
                yield ("end", "damaged", base + pos, rem, incl, None)
                return
            keep = max(pos - (base + pos) % align, 0) if align else pos
            tail = data[keep:] if keep else data
            skip = pos - keep
            base += keep
            if source.eof:
                yield ("end", "eof", base + skip, rem, incl, source.error)
                return
            need = hl + incl - rem if incl >= 0 else hl - rem
            want = max(self.batch_bytes, need)

    def _end(self, item: tuple) -> None:
        """Record how the walk ended (see :meth:`_walk`) in the capture info."""
        _, how, offset, rem, incl, error = item
        info, hl = self.info, self.rec_len
        if how == "damaged":
            info._truncate(
                info.records,
                offset,
                f"record {info.records} claims {incl} captured bytes, more than the snapshot length "
                f"allows ({self.snaplen}): the file is damaged from here on",
            )
        elif rem:
            if rem < hl:
                why = f"file ends inside the header of record {info.records} ({rem} of {hl} bytes present)"
            else:
                why = f"file ends inside record {info.records} ({rem - hl} of {incl} captured bytes present)"
            if error:
                why += f"; {error}"
            info._truncate(info.records, offset, why)
        elif error:
            info._truncate(info.records, offset, error)

    # ------------------------------------------------------------------ two processes
    def _parallel_ok(self) -> bool:
        """Walk in a second process? Only for a large plain file on a machine with a spare core."""
        if (self.source.compression is not None or not hasattr(os, "fork") or fcntl is None
                or os.environ.get("MESHPCAP_NO_FORK")):
            return False
        try:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            st = os.fstat(self.source.raw.fileno())
        except (OSError, AttributeError, ValueError):
            return False
        return cpus >= 2 and stat.S_ISREG(st.st_mode) and st.st_size >= max(PARALLEL_MIN_BYTES, 2 * self.batch_bytes)

    def _batches_parallel(self, work: Callable[[Batch], Any] | None) -> Iterator[Any]:
        """The record walk, and ``work`` on each batch, run in a forked child.

        The child walks exactly like :meth:`_walk`, on its own descriptor of the same file,
        in page-aligned chunks; for each it sends the batch's columns and what ``work``
        returned (pickled, arrays out of band) through a pipe.  This process maps the same
        chunk (``batch.data`` is then a read-only mmap, whose slices are bytes), so its batches
        hold the same records at the same offsets as the child's.  Should the child die, the
        walk goes on here from the last record it reported."""
        rfd, wfd = os.pipe()
        try:
            fcntl.fcntl(wfd, F_SETPIPE_SZ, 1 << 20)  # fewer, larger pipe transfers
        except OSError:
            pass
        pid = os.fork()
        if pid == 0:  # the child: walk and report, never return into the caller's code
            code = 1
            try:
                os.close(rfd)
                code = _child_walk(self, self.info.path, wfd, work)
            except BaseException:
                pass
            finally:
                os._exit(code)
        os.close(wfd)
        fd = self.source.raw.fileno()
        info = self.info
        resume = FILE_HEADER_LEN  # the file offset just past the last record reported
        ended = False
        try:
            with os.fdopen(rfd, "rb", buffering=0) as pipe:
                while True:
                    head = _read_exact(pipe, _MSG.size)
                    if head is None:
                        break
                    kind, base, length, nbufs, nhead = _MSG.unpack(head)
                    body = _read_exact(pipe, nhead)
                    sizes = _read_exact(pipe, 8 * nbufs)
                    if body is None or sizes is None:
                        break
                    bufs = [_read_exact(pipe, n, writable=True) for n in struct.unpack(f"<{nbufs}Q", sizes)]
                    if any(b is None for b in bufs):
                        break
                    if kind != _MSG_BATCH:
                        self._end(pickle.loads(body, buffers=bufs))
                        ended = True
                        break
                    offset, caplen, origlen, ts_ns, linktype, interface, result = pickle.loads(body, buffers=bufs)
                    try:
                        if base % mmap.ALLOCATIONGRANULARITY == 0:
                            data = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=base)
                        else:  # a chunk the walk could not align: copy it
                            data = os.pread(fd, length, base)
                    except (OSError, ValueError):
                        break
                    if len(data) != length:
                        break
                    batch = Batch(data=data, offset=offset, caplen=caplen, origlen=origlen, ts_ns=ts_ns,
                                  linktype=linktype, interface=interface, first_record=info.records)
                    info._account(caplen, origlen, ts_ns)
                    resume = base + int(offset[-1]) + int(caplen[-1])
                    yield batch if work is None else (batch, result)
        finally:
            _reap(pid)
        if not ended:  # the child failed: walk the rest here
            self.source.raw.seek(resume)
            self.source.eof = False
            for item in self._walk(self.source, b"", resume):
                if item[0] == "batch":
                    batch = self._batch(item[2], item[3], item[4])
                    yield batch if work is None else (batch, work(batch))
                else:
                    self._end(item)

    def _batch(self, data: bytes, offs: array | np.ndarray, fields: np.ndarray | None = None) -> Batch:
        o = offs if isinstance(offs, np.ndarray) else np.frombuffer(offs, dtype=np.int64)
        k = len(o)
        if fields is None:
            fields = _gather_u32(data, o, 4, self.order)
        caplen = fields[:, 2].astype(np.int64)
        origlen = fields[:, 3].astype(np.int64)
        if self.swapped == "yes":
            caplen, origlen = origlen, caplen
        elif self.swapped == "maybe":
            caplen, origlen = np.minimum(caplen, origlen), np.maximum(caplen, origlen)
        ts_ns = fields[:, 0].astype(np.int64) * 1_000_000_000 + fields[:, 1].astype(np.int64) * self.frac_ns
        info = self.info
        batch = Batch(
            data=data,
            offset=o + self.rec_len,
            caplen=caplen,
            origlen=origlen,
            ts_ns=ts_ns,
            linktype=np.full(k, self.linktype, dtype=np.int32),
            interface=np.zeros(k, dtype=np.int32),
            first_record=info.records,
        )
        info._account(caplen, origlen, ts_ns)
        return batch


def _gather_u32(data: bytes, offs: np.ndarray, nfields: int, order: str) -> np.ndarray:
    """``nfields`` consecutive 32-bit words at each offset, as a (len(offs), nfields) uint32 array.

    A view with a one-byte stride (element i = the word at byte i) lets one fancy index
    read words at any alignment without copying the chunk."""
    out = np.empty((len(offs), nfields), dtype=np.uint32)
    if len(offs):
        words = np.ndarray(shape=(len(data) - 3,), dtype=np.dtype(order + "u4"), buffer=data, strides=(1,))
        for f in range(nfields):
            out[:, f] = words[offs + 4 * f]
    return out


def _child_walk(walker: PcapWalker, path: str, wfd: int, work: Callable[[Batch], Any] | None) -> int:
    """In the forked child: walk the file on a descriptor of its own and report each chunk."""
    raw = open(path, "rb", buffering=0)
    source = MappedSource(raw.fileno(), os.fstat(raw.fileno()).st_size)
    write = os.write

    def send(kind: int, base: int, length: int, obj: Any) -> None:
        bufs: list = []
        out = io.BytesIO()
        _ArrayPickler(out, protocol=5, buffer_callback=bufs.append).dump(obj)
        body = out.getbuffer()
        views = [b.raw() for b in bufs]
        parts = [_MSG.pack(kind, base, length, len(views), len(body)), body,
                 struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))] + views
        for part in parts:
            buf = memoryview(part).cast("B")
            while buf:
                buf = buf[write(wfd, buf):]

    # Start at the file's first byte so that every chunk begins on a page boundary.
    for item in walker._walk(source, b"", 0, skip=FILE_HEADER_LEN, align=mmap.ALLOCATIONGRANULARITY):
        if item[0] == "batch":
            _, base, data, offs, fields = item
            b = walker._batch(data, offs, fields)
            result = work(b) if work is not None else None
            send(_MSG_BATCH, base, len(data), (b.offset, b.caplen, b.origlen, b.ts_ns, b.linktype, b.interface, result))
        else:
            send(_MSG_END, 0, 0, item)
    os.close(wfd)
    return 0


def _array_from(buf: Any, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    """Rebuild an array sent by :class:`_ArrayPickler` (in the reading process)."""
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


class _ArrayPickler(pickle.Pickler):
    """Sends contiguous arrays out of band with their dtype as a string.

    numpy's own pickling rebuilds each dtype as a new, equal, object; ufunc.at and other
    paths then take a slow generic route (np.minimum.at ran 30 times slower on such arrays),
    while np.frombuffer with a dtype string gives numpy's canonical dtype objects."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.flags.c_contiguous and obj.dtype.names is None and not obj.dtype.hasobject:
            return _array_from, (pickle.PickleBuffer(obj.reshape(-1)), obj.dtype.str, obj.shape)
        return NotImplemented


def _read_exact(f: BinaryIO, n: int, writable: bool = False) -> bytes | bytearray | None:
    """Exactly ``n`` bytes from an unbuffered pipe, or None at its end."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf if writable else bytes(buf)


def _reap(pid: int) -> None:
    """End the child (if it still runs) and collect it."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
