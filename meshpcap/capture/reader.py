"""open_capture: open a file, pipe or standard input, detect compression and format from the
first bytes, and hand out columnar packet batches (the walkers live in pcap.py and pcapng.py)."""

from __future__ import annotations

import os
from typing import Any, BinaryIO, Callable, Iterator

from meshpcap.capture import pcap, pcapng
from meshpcap.capture.compressed import GZIP_MAGIC, ZSTD_MAGIC, ZSTD_SKIPPABLE, GunzipStream, UnzstdStream
from meshpcap.capture.source import INT64_MAX, INT64_MIN, Batch, CaptureInfo, MappedSource, Source, regular_size
from meshpcap.errors import CaptureError

__all__ = ["open_capture", "Capture", "Batch", "CaptureInfo", "MappedSource", "Source", "describe",
           "INT64_MAX", "INT64_MIN", "STDIN"]

STDIN = "-"  # the name that reads standard input


class Capture:
    """An opened capture: ``info`` plus a single pass of :meth:`batches`."""

    def __init__(self, info: CaptureInfo, source: Source, walker: Any) -> None:
        self.info = info
        self._source = source
        self._walker = walker
        self._used = False
        self._begun: Iterator[Any] | None = None  # the pairs start() returned, until they end

    def batches(self) -> Iterator[Batch]:
        """Yield the packets in file order, one :class:`Batch` per chunk; closes the file at the end."""
        yield from self._run(None)

    def batches_with(self, work: Callable[[Batch], Any],
                     idle: Callable[[], bool] | None = None) -> Iterator[tuple[Batch, Any]]:
        """Like :meth:`batches`, yielding (batch, work(batch)) pairs.

        ``work`` must be a pure function of the batch whose result pickles (a later stage's
        per-batch step, e.g. header decoding): where the walk runs in a second process, so
        does ``work``, overlapping what the caller does with the previous pairs.  There, while
        the next pair is not ready yet, ``idle()`` is called (when given) until it returns False:
        a small piece of the caller's own work, done in time it would otherwise wait.  There too,
        a pair's arrays (the batch's columns, and those of what ``work`` returned) are views of
        memory the two processes share, valid until the next pair is asked for: a caller copies
        what it keeps longer."""
        yield from self._run(work, idle)

    def start(self, work: Callable[[Batch], Any], idle: Callable[[], bool] | None = None) -> Iterator[tuple[Batch, Any]]:
        """:meth:`batches_with`, its walk begun before this returns: where the walk runs in a second
        process, that process is started now and walks (and works) ahead, as far as the pipe between
        them holds, while the caller does other things before it takes the pairs.  Closing the
        iterator, or the capture, ends the walk (and that process)."""
        pairs = self._run(work, idle, begin=True)
        next(pairs)  # the None that says the walk has begun
        self._begun = pairs
        return pairs

    def _run(self, work: Callable[[Batch], Any] | None, idle: Callable[[], bool] | None = None,
             begin: bool = False) -> Iterator[Any]:
        if self._used:
            raise RuntimeError("Capture.batches() is single pass")
        self._used = True
        try:
            yield from (self._walker.batches(begin=begin) if work is None else self._walker.batches(work, idle, begin))
            if self.info.truncated is not None and self._source.error_at is not None:
                self.info.truncated.setdefault("compressed_offset", self._source.error_at)
            self._source.note_change(self.info)
        finally:
            self._begun = None  # ending now: nothing for close() to end
            self.close()

    def close(self) -> None:
        begun, self._begun = self._begun, None
        if begun is not None:  # a walk begun by start() and not taken to its end: end it (and its process)
            begun.close()
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


def _open_raw(name: str) -> BinaryIO:
    if name == STDIN:
        try:
            return os.fdopen(os.dup(0), "rb", buffering=0)  # the process's standard input, whatever sys.stdin is
        except OSError:
            raise CaptureError("standard input", "cannot be read") from None
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
    if os.path.isdir(name):
        raw.close()
        raise CaptureError(name, "is a directory, not a capture file")
    return raw


def open_capture(path: str | os.PathLike, batch_bytes: int = 16 << 20) -> Capture:
    """Open a pcap or pcapng capture (optionally gzip- or zstd-compressed) and validate its header.

    ``path`` may be a regular file, a FIFO, a device such as /dev/stdin, or ``"-"`` for
    standard input; anything but a plain regular file is read as a stream (no seek, no
    mapping).  Raises :class:`CaptureError` when the capture as a whole cannot be read."""
    name = os.fspath(path)
    if batch_bytes < 1:
        raise ValueError("batch_bytes must be positive")
    shown = "standard input" if name == STDIN else name
    raw = _open_raw(name)
    try:
        try:
            source = _open_source(raw)
            head = source.read(24)
        except OSError as exc:
            raise CaptureError(shown, f"cannot read: {exc.strerror or exc}") from None
        prefix = "" if source.compression is None else f"{source.compression}-compressed file: "
        if not head:
            if source.error:
                raise CaptureError(shown, source.error)
            raise CaptureError(shown, "empty file (0 bytes)" if not prefix else prefix + "decompresses to nothing")
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
            raise CaptureError(shown, prefix + problem) from None
    except BaseException:
        raw.close()
        raise
    return Capture(info, source, walker)


class _Prefixed:
    """A stream that cannot seek back, with the bytes already read to detect its kind put back."""

    def __init__(self, head: bytes, raw: BinaryIO) -> None:
        self.head = head
        self.raw = raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0:
                out, self.head = self.head + self.raw.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.raw.read(n)

    def fileno(self) -> int:
        return self.raw.fileno()

    @property
    def closed(self) -> bool:
        return self.raw.closed

    def close(self) -> None:
        self.raw.close()


def _open_source(raw: BinaryIO) -> Source:
    size = regular_size(raw.fileno())
    magic = b""
    while len(magic) < 4:
        part = raw.read(4 - len(magic))
        if not part:
            break
        magic += part
    if size is not None:
        raw.seek(0)
        stream: Any = raw
    else:
        stream = raw = _Prefixed(magic, raw)  # type: ignore[assignment]
    if magic.startswith(GZIP_MAGIC):
        return Source(raw, GunzipStream(stream), "gzip", size)
    if magic == ZSTD_MAGIC or (len(magic) == 4 and int.from_bytes(magic, "little") & ~0xF == ZSTD_SKIPPABLE):
        return Source(raw, UnzstdStream(stream), "zstd", size)
    return Source(raw, stream, None, size)
