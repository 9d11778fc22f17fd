"""open_capture: detect the format from the first bytes, decompress, and hand out columnar packet batches."""

from __future__ import annotations

import mmap
import os
import stat
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from meshpcap.capture.linktypes import linktype_name
from meshpcap.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 section 2.3.1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 section 3.1.1

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


@dataclass(slots=True)
class Batch:
    """Packets from one chunk of the (decompressed) file, as columns; packet i is
    ``data[offset[i]:offset[i] + caplen[i]]``.  ``data`` is a read-only mmap of the chunk
    for an uncompressed regular file (see :class:`MappedSource`), else bytes; its slices are
    bytes either way."""

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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (link types as names)."""
        return {
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
            "cut_by_snaplen": self.cut_by_snaplen,
            "sections": self.sections,
            "interfaces": [dict(i) for i in self.interfaces],
        }

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


class Source:
    """The decompressed byte stream: exact reads, and a decompression error turned into EOF."""

    def __init__(self, raw: BinaryIO, stream: Any, compression: str | None) -> None:
        self.raw = raw
        self.stream = stream
        self.compression = compression
        self.error: str | None = None  # why the stream ended early, if it did
        self.eof = False

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
            except (EOFError, OSError, zlib.error) as exc:
                self._fail(exc)
                break
            except Exception as exc:  # zstandard.ZstdError and friends
                if type(exc).__module__.startswith("zstandard") or type(exc).__name__ == "ZstdError":
                    self._fail(exc)
                    break
                raise
            if not part:
                self.eof = True
                break
            parts.append(part)
            want -= len(part)
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def read_after(self, tail: bytes, n: int) -> bytes:
        """``tail`` (the last bytes handed out) followed by up to ``n`` new bytes.

        A plain file seeks back and reads the tail again, which is cheaper than
        concatenating a large chunk; a decompressed stream has to concatenate."""
        if not tail:
            return self.read(n)
        if self.compression is None and not self.eof:
            self.raw.seek(-len(tail), os.SEEK_CUR)
            return self.read(len(tail) + n)
        return tail + self.read(n)

    def _fail(self, exc: BaseException) -> None:
        self.eof = True
        detail = str(exc).strip().rstrip(".") or type(exc).__name__
        self.error = f"the {self.compression or 'file'} stream is damaged or cut ({detail})"

    def close(self) -> None:
        for obj in (self.stream, self.raw):
            try:
                obj.close()
            except Exception:
                pass


class MappedSource:
    """What the walkers need of a :class:`Source`, over a plain regular file whose chunks are
    mapped rather than read: no copy, and no fresh memory to fault in (reading 16 MiB chunks
    into new buffers cost about five times as much).  A chunk that starts on a multiple of
    ``mmap.ALLOCATIONGRANULARITY`` is a read-only mmap (its slices are bytes); the walkers keep
    their chunks aligned, and any other chunk is read."""

    compression = None
    error = None

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.pos = 0  # file offset just past the bytes handed out
        self.eof = False

    def read_after(self, tail: bytes, n: int) -> Any:
        """``tail`` (the last bytes handed out) followed by up to ``n`` new bytes."""
        start = self.pos - len(tail)
        end = min(self.pos + n, self.size)
        self.pos = end
        self.eof = end >= self.size
        if end <= start:
            return b""
        if start % mmap.ALLOCATIONGRANULARITY:
            return os.pread(self.fd, end - start, start)
        return mmap.mmap(self.fd, end - start, access=mmap.ACCESS_READ, offset=start)


def mapped_source(source: Source) -> MappedSource | None:
    """A :class:`MappedSource` over the file of ``source`` when it is an uncompressed regular
    file (and MESHPCAP_NO_MMAP is not set: a file cut short while it is mapped and read would
    end the process with SIGBUS); else None."""
    if source.compression is not None or os.environ.get("MESHPCAP_NO_MMAP") or not hasattr(os, "pread"):
        return None  # (no os.pread, for a chunk that does not start on a page: Windows)
    try:
        fd = source.raw.fileno()
        st = os.fstat(fd)
    except (OSError, AttributeError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    return MappedSource(fd, st.st_size)


class Capture:
    """An opened capture: ``info`` plus a single pass of :meth:`batches`."""

    def __init__(self, info: CaptureInfo, source: Source, walker: Any) -> None:
        self.info = info
        self._source = source
        self._walker = walker
        self._used = False

    def batches(self) -> Iterator[Batch]:
        """Yield the packets in file order, one :class:`Batch` per chunk; closes the file at the end."""
        if self._used:
            raise RuntimeError("Capture.batches() is single pass")
        self._used = True
        try:
            yield from self._walker.batches()
        finally:
            self.close()

    def batches_with(self, work: Callable[[Batch], Any]) -> Iterator[tuple[Batch, Any]]:
        """Like :meth:`batches`, yielding (batch, work(batch)) pairs.

        ``work`` must be a pure function of the batch whose result pickles (a later stage's
        per-batch step, e.g. header decoding): where the walk runs in a second process, so
        does ``work``, overlapping what the caller does with the previous pairs."""
        if self._used:
            raise RuntimeError("Capture.batches() is single pass")
        self._used = True
        try:
            yield from self._walker.batches(work)
        finally:
            self.close()

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_OTHER_MAGICS: list[tuple[bytes, str]] = [
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"\x04\x22\x4d\x18", "an lz4 file"),
    (b"GMBU", "a Microsoft Network Monitor capture"),
    (b"RTSS", "a Microsoft Network Monitor 1.x capture"),
    (b"snoop\x00\x00\x00", "a snoop capture"),
    (b"XCP\x00", "a NetXray/Sniffer capture"),
    (b"%PDF", "a PDF document"),
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"SQLite format 3", "an SQLite database"),
]


def describe(head: bytes) -> str:
    """A short hint at what a non-capture file looks like (from its first bytes)."""
    for magic, what in _OTHER_MAGICS:
        if head.startswith(magic):
            return f"looks like {what}"
    start = head[:8]
    low = head.lstrip().lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head")):
        return f"looks like an HTML page; starts with {start.decode('latin-1')!r}"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return f"starts with {start.decode('ascii')!r}"
    return "starts with bytes " + start.hex(" ")


def open_capture(path: str | os.PathLike, batch_bytes: int = 16 << 20) -> Capture:
    """Open a pcap or pcapng file (optionally gzip- or zstd-compressed) and validate its header.

    Raises :class:`CaptureError` when the file as a whole cannot be read."""
    from meshpcap.capture import pcap, pcapng

    name = os.fspath(path)
    if batch_bytes < 1:
        raise ValueError("batch_bytes must be positive")
    try:
        raw = open(name, "rb", buffering=0)
    except FileNotFoundError:
        raise CaptureError(name, "no such file") from None
    except IsADirectoryError:
        raise CaptureError(name, "is a directory, not a capture file") from None
    except PermissionError:
        raise CaptureError(name, "permission denied") from None
    except OSError as exc:
        raise CaptureError(name, f"cannot open: {exc.strerror or exc}") from None
    try:
        if os.path.isdir(name):
            raise CaptureError(name, "is a directory, not a capture file")
        source = _open_source(name, raw)
        head = source.read(24)
        prefix = "" if source.compression is None else f"{source.compression}-compressed file: "
        if not head:
            if source.error:
                raise CaptureError(name, source.error)
            raise CaptureError(name, "empty file (0 bytes)" if not prefix else prefix + "decompresses to nothing")
        info = CaptureInfo(path=name, format="", compression=source.compression)
        try:
            if head[:4] in pcap.MAGICS:
                walker: Any = pcap.PcapWalker(source, info, head, batch_bytes)
            elif head[:4] == pcapng.SHB_MAGIC:
                walker = pcapng.PcapngWalker(source, info, head, batch_bytes)
            else:
                raise ValueError(f"not a pcap or pcapng capture ({describe(head)})")
        except ValueError as exc:
            problem = str(exc)
            if source.error and "ends inside" in problem:
                problem += f"; {source.error}"
            raise CaptureError(name, prefix + problem) from None
    except BaseException:
        raw.close()
        raise
    return Capture(info, source, walker)


def _open_source(name: str, raw: BinaryIO) -> Source:
    magic = b""
    while len(magic) < 4:
        part = raw.read(4 - len(magic))
        if not part:
            break
        magic += part
    raw.seek(0)
    if magic.startswith(GZIP_MAGIC):
        return Source(raw, _GunzipStream(raw), "gzip")
    if magic == ZSTD_MAGIC:
        return Source(raw, _UnzstdStream(raw), "zstd")
    return Source(raw, raw, None)


class _GunzipStream:
    """Streaming gzip (RFC 1952) reader that hands out every byte decoded before an error.

    gzip.GzipFile reads ahead through a buffer and loses the decoded tail of a cut file;
    this keeps it, so the packets before the cut are still delivered."""

    CHUNK = 1 << 16

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""

    def read(self, n: int) -> bytes:
        out: list[bytes] = []
        have = 0
        while have < n:
            if self.inflater.eof:
                # RFC 1952 section 2.2: members may follow one another; zero padding is tolerated.
                rest = (self.inflater.unused_data + self.pending).lstrip(b"\0")
                while not rest:
                    more = self.raw.read(self.CHUNK)
                    if not more:
                        return b"".join(out)
                    rest = more.lstrip(b"\0")
                self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self.pending = rest
            if not self.pending:
                self.pending = self.raw.read(self.CHUNK)
                if not self.pending:
                    if out:
                        break
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
            part = self.inflater.decompress(self.pending, n - have)
            self.pending = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            if part:
                out.append(part)
                have += len(part)
        return b"".join(out)

    def close(self) -> None:
        pass


class _UnzstdStream:
    """Streaming zstd (RFC 8878) reader over consecutive frames that notices a cut frame.

    ZstdDecompressor().stream_reader ends silently on a cut file; a decompressobj says
    whether its frame ended, so a cut is reported instead of looking like a clean end."""

    CHUNK = 1 << 13  # small input pieces bound the output of one call (blocks are <= 128 KiB)

    def __init__(self, raw: BinaryIO) -> None:
        import zstandard

        self.raw = raw
        self.new = zstandard.ZstdDecompressor().decompressobj
        self.inflater = self.new()
        self.pending = b""
        self.out = b""
        self.started = False  # the current frame has been fed something

    def read(self, n: int) -> bytes:
        out: list[bytes] = [self.out] if self.out else []
        have = len(self.out)
        self.out = b""
        while have < n:
            if self.inflater.eof:
                # RFC 8878 section 3: a file may hold several frames back to back.
                self.pending = self.inflater.unused_data + self.pending
                self.inflater = self.new()
                self.started = False
            if not self.pending:
                self.pending = self.raw.read(self.CHUNK)
                if not self.pending:
                    if self.started and not self.inflater.eof:
                        if out:
                            break
                        raise EOFError("compressed file ended before the end of its zstd frame")
                    break
            data, self.pending = self.pending, b""
            self.started = True
            part = self.inflater.decompress(data)
            if part:
                out.append(part)
                have += len(part)
        joined = b"".join(out)
        if len(joined) > n:
            joined, self.out = joined[:n], joined[n:]
        return joined

    def close(self) -> None:
        pass
