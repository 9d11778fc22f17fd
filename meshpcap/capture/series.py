"""Files that continue one another (ring buffers: ``tcpdump -C/-W``, ``dumpcap -b``, ``editcap -c``)
read as one capture: their order by first packet time, and one capture info for them all."""

from __future__ import annotations

import os
from pathlib import Path

from meshpcap.capture.compressed import GZIP_MAGIC, ZSTD_MAGIC
from meshpcap.capture.pcap import MAGICS as PCAP_MAGICS
from meshpcap.capture.pcapng import SHB_MAGIC
from meshpcap.capture.reader import open_capture
from meshpcap.capture.source import CaptureInfo
from meshpcap.errors import CaptureError


def looks_like_capture(path: str | os.PathLike) -> bool:
    """Do the first bytes say pcap, pcapng, gzip or zstd (the name does not matter)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in PCAP_MAGICS or head == SHB_MAGIC or head.startswith(GZIP_MAGIC) or head == ZSTD_MAGIC


def series_in(directory: str | os.PathLike) -> list[str]:
    """The captures in ``directory`` (by their bytes), sorted by name; CaptureError when none."""
    d = Path(directory)
    if not d.is_dir():
        raise CaptureError(str(d), "is not a directory (--series takes the directory of a split capture)")
    found = sorted(str(p) for p in d.iterdir() if p.is_file() and looks_like_capture(p))
    if not found:
        raise CaptureError(str(d), "holds no pcap or pcapng files")
    return found


def first_packet_ns(path: str) -> int | None:
    """The time of the first packet of ``path`` (None when it has none); CaptureError if unreadable."""
    with open_capture(path, batch_bytes=1 << 16) as cap:
        for batch in cap.batches():
            return int(batch.ts_ns[0])
    return None


def order(paths: list[str]) -> list[str]:
    """``paths`` by first packet time (files without packets last, ties by the given order).

    Each is read twice (its first packet here, then all of it), so each must be a regular
    file: standard input or a FIFO is refused with the capture error."""
    for p in paths:
        if p == "-" or not os.path.isfile(p):
            what = "standard input" if p == "-" else p
            if p != "-" and not os.path.exists(p):
                raise CaptureError(p, "no such file")
            raise CaptureError(what, "one of several files must be a regular file (a pipe cannot be read twice)")
    keyed = [(first_packet_ns(p), i, p) for i, p in enumerate(paths)]
    return [p for ts, i, p in sorted(keyed, key=lambda k: (k[0] is None, k[0] or 0, k[1]))]


def merge(infos: list[CaptureInfo]) -> CaptureInfo:
    """One capture info for files read one after another: counters summed, interfaces listed in
    order, the first truncation (naming its file), and ``files`` with each file's time span and
    the gap before it (negative: it overlaps the file before)."""
    first = infos[0]
    out = CaptureInfo(path=first.path, format=first.format, compression=first.compression,
                      byte_order=first.byte_order)
    formats = {i.format for i in infos}
    out.format = first.format if len(formats) == 1 else "mixed"
    comps = {i.compression for i in infos}
    out.compression = first.compression if len(comps) == 1 else "mixed"
    out.files = []
    prev_last = None
    for k, info in enumerate(infos):
        out.link_types = sorted(set(out.link_types) | set(info.link_types))
        out.interfaces += [dict(i, index=len(out.interfaces) + n, file=k) for n, i in enumerate(info.interfaces)]
        out.snaplen = info.snaplen if out.snaplen is None else max(out.snaplen, info.snaplen or 0)
        for f in ("records", "bytes", "captured_bytes", "cut_by_snaplen", "unknown_blocks", "sections",
                  "damaged_blocks"):
            setattr(out, f, getattr(out, f) + getattr(info, f))
        if info.first_ns is not None:
            out.first_ns = info.first_ns if out.first_ns is None else min(out.first_ns, info.first_ns)
            out.last_ns = info.last_ns if out.last_ns is None else max(out.last_ns, info.last_ns)
        if info.dropped_by_capture is not None:
            out.dropped_by_capture = (out.dropped_by_capture or 0) + info.dropped_by_capture
        if info.truncated is not None and out.truncated is None:
            out.truncated = dict(info.truncated, file=info.path)
            out.truncated["record"] += out.records - info.records
        if info.changed is not None and out.changed is None:
            out.changed = dict(info.changed, file=info.path)
        gap = None
        if prev_last is not None and info.first_ns is not None:
            gap = info.first_ns - prev_last
        out.files.append({"path": info.path, "format": info.format, "compression": info.compression,
                          "packets": info.records, "first_ns": info.first_ns, "last_ns": info.last_ns,
                          "gap_before_ns": gap})
        if info.last_ns is not None:
            prev_last = info.last_ns
    return out
