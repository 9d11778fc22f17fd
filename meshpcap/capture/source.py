"""What the format walkers share: the batch and capture-info records, and the byte sources they
read (a stream, compressed or not, and a regular file read by position, mapped where safe).

The walkers (pcap.py, pcapng.py) and the two-process reader (parallel.py) import this module;
format detection (reader.py) sits above them all.
"""

from __future__ import annotations

import mmap
import os
import stat
from dataclasses import field
from typing import Any, BinaryIO

import numpy as np

from meshpcap._dataclass import dataclass
from meshpcap import settings
from meshpcap.capture.linktypes import linktype_name

try:
    import fcntl
except ImportError:  # Windows: no leases, no mapping (see FileGuard)
    fcntl = None  # type: ignore[assignment]

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


@dataclass(slots=True)
class Batch:
    """Packets from one chunk of the (decompressed) file, as columns; packet i is
    ``data[offset[i]:offset[i] + caplen[i]]``.  ``data`` is a read-only mmap of the chunk
    for an uncompressed regular file that is safe to map (see :class:`FileGuard`), else bytes;
    its slices are bytes either way."""

    data: bytes
    offset: np.ndarray
    caplen: np.ndarray
    origlen: np.ndarray
    ts_ns: np.ndarray
    linktype: np.ndarray
    interface: np.ndarray
    first_record: int

    def __len__(self) -> int:
        return len(self.offset)


@dataclass(slots=True)
class CaptureInfo:
    """What the capture says about itself; counters are complete once iteration ends."""

    path: str
    format: str
    compression: str | None = None
    byte_order: str = "little"
    link_types: list[int] = field(default_factory=list)
    interfaces: list[dict] = field(default_factory=list)
    snaplen: int | None = None
    records: int = 0
    bytes: int = 0
    captured_bytes: int = 0
    cut_by_snaplen: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    truncated: dict | None = None
    dropped_by_capture: int | None = None
    unknown_blocks: int = 0
    sections: int = 0
    damaged_blocks: int = 0  # pcapng blocks with inconsistent lengths that the walk read past
    changed: dict | None = None  # {"size_at_open", "size_at_end"} when the file changed while read
    files: list[dict] | None = None  # a series of files read as one capture (pipeline.read_flows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (link types as names)."""
        out = {
            "path": self.path,
            "format": self.format,
            "compression": self.compression,
            "link_types": [linktype_name(lt) for lt in self.link_types],
            "packets": self.records,
            "bytes": self.bytes,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "truncated": dict(self.truncated) if self.truncated is not None else None,
            "dropped_by_capture": self.dropped_by_capture,
            "unknown_blocks": self.unknown_blocks,
            "damaged_blocks": self.damaged_blocks,
            "changed_while_read": dict(self.changed) if self.changed is not None else None,
            "cut_by_snaplen": self.cut_by_snaplen,
            "sections": self.sections,
            "interfaces": [dict(i) for i in self.interfaces],
        }
        if self.files is not None:
            out["files"] = [dict(f) for f in self.files]
        return out

    def _account(self, caplen: np.ndarray, origlen: np.ndarray, ts_ns: np.ndarray) -> None:
        """Add one batch's packets to the counters."""
        if len(caplen) == 0:
            return
        self.records += len(caplen)
        self.bytes += int(origlen.sum())
        self.captured_bytes += int(caplen.sum())
        self.cut_by_snaplen += int(np.count_nonzero(caplen < origlen))
        lo, hi = int(ts_ns.min()), int(ts_ns.max())
        self.first_ns = lo if self.first_ns is None else min(self.first_ns, lo)
        self.last_ns = hi if self.last_ns is None else max(self.last_ns, hi)

    def _truncate(self, record: int, offset: int, reason: str) -> None:
        self.truncated = {"record": record, "offset": offset, "reason": reason}


class FileGuard:
    """Says whether a regular file may be mapped now, and notices when it changes size.

    Touching a mapped page that a truncation removed ends the process with SIGBUS, so a file
    is mapped only under a Linux read lease (fcntl F_SETLEASE): the kernel grants it only
    while no one has the file open for writing (a file still being written is read, not
    mapped), and a process that then opens it for writing or truncates it waits (up to
    /proc/sys/fs/lease-break-time, 45 s by default) until the lease is given up.  Each chunk
    asks :meth:`mappable`; on a pending break it gives the lease up and from then on chunks
    are read with pread (the chunk mapped before is no longer touched: its packets were
    handed out as bytes).  The break signal is SIGURG, ignored by default, instead of SIGIO,
    which would end the process.  Without leases (not Linux, another owner's file without
    CAP_LEASE, a file system without them, MESHPCAP_NO_MMAP=1) nothing is mapped."""

    F_SETLEASE, F_GETLEASE, F_SETSIG = 1024, 1025, 10  # linux/fcntl.h

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size_at_open = size
        self.leased = False
        if fcntl is None or settings.get().no_mmap or not hasattr(os, "pread") or not hasattr(fcntl, "F_RDLCK"):
            return
        try:
            import signal

            fcntl.fcntl(fd, self.F_SETSIG, int(signal.SIGURG))
            fcntl.fcntl(fd, self.F_SETLEASE, fcntl.F_RDLCK)
            self.leased = True
        except (OSError, AttributeError, ValueError):
            self.leased = False

    def mappable(self) -> bool:
        """True while the lease holds (no writer, no truncation pending)."""
        if not self.leased:
            return False
        try:
            if fcntl.fcntl(self.fd, self.F_GETLEASE) == fcntl.F_RDLCK:
                return True
        except OSError:
            pass
        self.release()
        return False

    def release(self) -> None:
        if self.leased:
            self.leased = False
            try:
                fcntl.fcntl(self.fd, self.F_SETLEASE, fcntl.F_UNLCK)
            except OSError:
                pass

    def size_now(self) -> int | None:
        try:
            return os.fstat(self.fd).st_size
        except OSError:
            return None


def regular_size(fd: int) -> int | None:
    """The size of the regular file open on ``fd``, or None for a pipe, socket or device."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class Source:
    """The (decompressed) byte stream: exact reads; damage ends it with ``error`` set.

    ``stream`` is the raw file itself (plain capture) or a decompressing reader from
    compressed.py, which hands out every byte decoded before damage and then says what broke."""

    def __init__(self, raw: BinaryIO, stream: Any, compression: str | None, size: int | None = None) -> None:
        self.raw = raw
        self.stream = stream
        self.compression = compression
        self.size = size  # the size at open of a regular file, else None (pipe, device)
        self.error: str | None = None  # why the stream ended early, if it did
        self.error_at: int | None = None  # the compressed byte where it broke, if known
        self.eof = False
        self.guard: FileGuard | None = None

    @property
    def seekable(self) -> bool:
        return self.size is not None and self.compression is None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        if self.eof or n <= 0:
            return b""
        parts = []
        want = n
        read = self.stream.read
        while want > 0:
            try:
                part = read(want)
            except OSError as exc:
                self._fail(exc)
                break
            if not part:
                self.eof = True
                err = getattr(self.stream, "error", None)
                if err:
                    self.error, self.error_at = err, getattr(self.stream, "error_at", None)
                break
            parts.append(part)
            want -= len(part)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def read_after(self, tail: bytes, n: int) -> bytes:
        """``tail`` (the last bytes handed out) followed by up to ``n`` new bytes.

        A plain regular file seeks back and reads the tail again, which is cheaper than
        concatenating a large chunk; a stream (decompressed, or a pipe) concatenates."""
        if not tail:
            return self.read(n)
        if self.seekable and not self.eof:
            self.raw.seek(-len(tail), os.SEEK_CUR)
            return self.read(len(tail) + n)
        return tail + self.read(n)

    def _fail(self, exc: BaseException) -> None:
        self.eof = True
        detail = getattr(exc, "strerror", None) or str(exc).strip().rstrip(".") or type(exc).__name__
        self.error = f"reading the {self.compression or 'file'} failed ({detail})"

    def note_change(self, info: CaptureInfo) -> None:
        """At the end of the walk: record in ``info`` that the file changed size while it was read."""
        if self.size is None:
            return
        now = regular_size(self.raw.fileno()) if not self.raw.closed else None
        if now is None or now == self.size:
            return
        info.changed = {"size_at_open": self.size, "size_at_end": now}
        how = "shrank" if now < self.size else "grew"
        note = (f"the file {how} while it was read ({self.size} bytes when opened, {now} at the end): "
                "packets written or removed meanwhile may be missing")
        if info.truncated is None:
            info._truncate(info.records, -1, note)
        elif "while it was read" not in info.truncated["reason"]:
            info.truncated["reason"] += "; " + note

    def close(self) -> None:
        if self.guard is not None:
            self.guard.release()
        for obj in (self.stream, self.raw):
            try:
                obj.close()
            except Exception:
                pass


class MappedSource:
    """What the walkers need of a :class:`Source`, over a plain regular file read by position:
    chunks are mapped while :class:`FileGuard` says that is safe (no copy, and no fresh memory
    to fault in: reading 16 MiB chunks into new buffers cost about five times as much), else
    read with pread, the size checked again at each chunk.  A chunk that starts on a multiple
    of ``mmap.ALLOCATIONGRANULARITY`` can be mapped (its slices are bytes); the walkers keep
    their chunks aligned, and any other chunk is read."""

    compression = None
    error = None

    def __init__(self, fd: int, size: int, guard: FileGuard) -> None:
        self.fd = fd
        self.size = size
        self.guard = guard
        self.pos = 0  # file offset just past the bytes handed out
        self.eof = False

    def read_after(self, tail: bytes, n: int) -> Any:
        """``tail`` (the last bytes handed out) followed by up to ``n`` new bytes."""
        start = self.pos - len(tail)
        if self.guard.mappable():  # the size cannot have changed: no writer while the lease holds
            end = min(self.pos + n, self.size)
            if end > start and start % mmap.ALLOCATIONGRANULARITY == 0:
                self.pos, self.eof = end, end >= self.size
                return mmap.mmap(self.fd, end - start, access=mmap.ACCESS_READ, offset=start)
        else:
            now = self.guard.size_now()
            self.size = now if now is not None else self.size
        end = min(self.pos + n, self.size)
        if end <= start:
            self.pos, self.eof = max(start, 0), True
            return b""
        data = os.pread(self.fd, end - start, start)
        self.pos = start + len(data)
        self.eof = len(data) < end - start or self.pos >= self.size
        return data


def mapped_source(source: Source) -> MappedSource | None:
    """A :class:`MappedSource` over the file of ``source`` when it is an uncompressed regular file
    and pread exists (Windows has none), else None (the walk reads ``source`` as a stream)."""
    if not source.seekable or not hasattr(os, "pread") or not source.size:
        return None
    fd = source.raw.fileno()
    if source.guard is None:
        source.guard = FileGuard(fd, source.size)
    return MappedSource(fd, source.size, source.guard)
