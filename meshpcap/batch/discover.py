"""Which files to audit: files as given, globs, and directories searched for captures by their bytes."""

from __future__ import annotations

import glob
import os
from typing import Iterable

# -- finding captures ------------------------------------------------------------------------------

def _is_capture_head(head: bytes) -> bool:
    from ..capture import pcap, pcapng

    return head[:4] in pcap.MAGICS or head[:4] == pcapng.SHB_MAGIC


def looks_like_capture(path: str | os.PathLike) -> bool:
    """True when the file's bytes begin as a pcap or pcapng file, plain or gzip/zstd-compressed
    (the magic numbers, never the name)."""
    from ..capture.reader import GZIP_MAGIC, ZSTD_MAGIC

    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if _is_capture_head(head):
                return True
            if head[:2] == GZIP_MAGIC:
                import zlib

                f.seek(0)
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = b""
                while len(out) < 4 and (chunk := f.read(4096)):
                    try:
                        out += d.decompress(chunk, 4 - len(out))
                    except zlib.error:
                        return False
                return _is_capture_head(out)
            if head == ZSTD_MAGIC:
                import zstandard

                f.seek(0)
                try:
                    with zstandard.ZstdDecompressor().stream_reader(f) as z:
                        return _is_capture_head(z.read(4))
                except zstandard.ZstdError:
                    return False
    except OSError:
        return False
    return False


def find_captures(paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files to audit, in order, each once: a file as given (whatever it holds: an unreadable one
    becomes an ``error`` row), a glob's matches, a directory's captures (searched recursively,
    chosen by their bytes)."""
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in paths_or_globs:
        text = os.fspath(item)
        if os.path.isdir(text):
            inside = [os.path.join(root, fname) for root, _, files in os.walk(text) for fname in files]
            for p in sorted(inside):
                if os.path.isfile(p) and looks_like_capture(p):
                    add(p)
        elif os.path.exists(text) or not glob.has_magic(text):
            add(text)
        else:
            for p in sorted(glob.glob(text, recursive=True)):
                if os.path.isdir(p):
                    for q in find_captures([p]):
                        add(q)
                else:
                    add(p)
    return out
