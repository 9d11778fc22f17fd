"""The service-tag index cached in binary form, so that judging needs no parse of a 4 MB JSON file.

A cache entry is an uncompressed ``.npz`` (numpy's zip of ``.npy`` arrays, every member with its CRC-32)
under ``<cache dir>/tag-index/``, named by the sha256 of the JSON file's bytes and the format and meshpcap
versions, so a changed file or a new meshpcap simply names another entry. It holds, per tag, each IP
version's prefix lengths with their network starts sorted and unique (the arrays ``PrefixIndex`` searches),
the tag's prefix strings (one blob, read only when ``tags[name]`` is asked for), prefix counts and change
numbers. Loading an entry reads the small arrays; a tag's index is then a few slices of them.

An entry is trusted only when it reads back whole: the zip's CRCs, the recorded hash, versions and shapes
all agree; anything else (truncated, flipped bits, another layout) counts as a miss, the JSON is parsed
and the entry is written again. Entries are written to a temporary file and renamed into place; a cache
directory that cannot be written is skipped without a word (the caller then parses every time).
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

FORMAT = 1
_META_KEYS = ("format", "meshpcap", "sha256", "change_number", "cloud", "tags")


def _version() -> str:
    from meshpcap import __version__

    return __version__


def entry_path(folder: Path, sha256: str) -> Path:
    safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in _version())
    return folder / "tag-index" / f"{sha256}-f{FORMAT}-{safe}.npz"


class TagArrays:
    """The arrays of one cache entry (or of a freshly parsed file), checked for consistency."""

    __slots__ = ("names", "ids", "changes", "counts", "str_off", "strings", "lev4", "starts4", "lev6", "starts6",
                 "_rows4", "_rows6")

    def __init__(self, names, changes, counts, str_off, strings, lev4, starts4, lev6, starts6) -> None:
        self.names: list[str] = names
        self.ids = {n: i for i, n in enumerate(names)}
        self.changes: list[int] = changes
        self.counts, self.str_off, self.strings = counts, str_off, strings
        self.lev4, self.starts4, self.lev6, self.starts6 = lev4, starts4, lev6, starts6
        self._check()
        tags = np.arange(len(names) + 1)
        self._rows4 = np.searchsorted(lev4[:, 0], tags).tolist()
        self._rows6 = np.searchsorted(lev6[:, 0], tags).tolist()

    def _check(self) -> None:
        n = len(self.names)
        if len(self.ids) != n or len(self.changes) != n:
            raise ValueError("names")
        if self.counts.shape != (n, 2) or self.str_off.shape != (n + 1,) or self.strings.ndim != 1:
            raise ValueError("shapes")
        if self.str_off[0] != 0 or self.str_off[-1] != len(self.strings) or np.any(np.diff(self.str_off) < 0):
            raise ValueError("string offsets")
        for lev, starts, bits in ((self.lev4, self.starts4, 32), (self.lev6, self.starts6, 128)):
            if lev.ndim != 2 or lev.shape[1] != 4 or starts.ndim != 1:
                raise ValueError("levels")
            if len(lev) == 0:
                if len(starts):
                    raise ValueError("levels")
                continue
            tag, length, off, cnt = lev.T
            if np.any(np.diff(tag) < 0) or tag[0] < 0 or tag[-1] >= n:
                raise ValueError("level tags")
            if np.any(length < 0) or np.any(length > bits) or np.any(cnt <= 0):
                raise ValueError("level lengths")
            ends = np.cumsum(cnt)
            if off[0] != 0 or np.any(off[1:] != ends[:-1]) or ends[-1] != len(starts):
                raise ValueError("level offsets")

    def prefixes(self, i: int) -> tuple[str, ...]:
        blob = bytes(self.strings[self.str_off[i]:self.str_off[i + 1]])
        return tuple(blob.decode("ascii").split("\n")) if blob else ()

    def levels(self, i: int) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
        """Tag ``i``'s (prefix length, sorted unique starts) per IP version; IPv6 starts as ``S16``."""
        v4 = [(int(length), self.starts4[off:off + cnt]) for _t, length, off, cnt in self.lev4[self._rows4[i]:self._rows4[i + 1]].tolist()]
        v6 = [(int(length), self.starts6[off:off + cnt]) for _t, length, off, cnt in self.lev6[self._rows6[i]:self._rows6[i + 1]].tolist()]
        return v4, v6

    def all_levels(self, which: int) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        """Per prefix length of IP version ``which``: every tag's starts, concatenated in tag order, and
        the tag name of each (the inputs of an index over all tags)."""
        lev, starts = (self.lev4, self.starts4) if which == 4 else (self.lev6, self.starts6)
        by_length: dict[int, list[tuple[int, int, int]]] = {}
        for tag, length, off, cnt in lev.tolist():
            by_length.setdefault(length, []).append((tag, off, cnt))
        for length in sorted(by_length):
            rows = by_length[length]
            joined = np.concatenate([starts[off:off + cnt] for _t, off, cnt in rows])
            labels = [self.names[t] for t, _o, cnt in rows for _ in range(cnt)]
            yield length, joined, labels


class LazyTags(Mapping):
    """``ServiceTags.tags`` read from a cache entry: names known, prefix strings decoded on first access."""

    __slots__ = ("_arrays", "_done")

    def __init__(self, arrays: TagArrays) -> None:
        self._arrays = arrays
        self._done: dict[str, tuple[str, ...]] = {}

    def __getitem__(self, name: str) -> tuple[str, ...]:
        found = self._done.get(name)
        if found is None:
            i = self._arrays.ids[name]  # KeyError for an unknown tag, as a dict
            found = self._done[name] = self._arrays.prefixes(i)
        return found

    def __contains__(self, name: object) -> bool:
        return name in self._arrays.ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays.names)

    def __len__(self) -> int:
        return len(self._arrays.names)

    def __repr__(self) -> str:
        return f"LazyTags({len(self)} tags)"


def build(tags) -> TagArrays:
    """The arrays of a freshly parsed ``ServiceTags`` (its ``_parsed`` prefixes)."""
    names = list(tags.tags)
    rows = {4: ([], [], []), 6: ([], [], [])}  # tag id, length, packed start
    counts = np.zeros((len(names), 2), dtype=np.int64)
    blobs = []
    for i, name in enumerate(names):
        parsed = tags._prefixes(name)
        for version, packed, length in parsed:
            r = rows[version]
            r[0].append(i)
            r[1].append(length)
            r[2].append(packed)
        v6 = sum(1 for p in parsed if p[0] == 6)
        counts[i] = (len(parsed) - v6, v6)
        blobs.append("\n".join(tags.tags[name]).encode("ascii"))
    str_off = np.zeros(len(names) + 1, dtype=np.int64)
    str_off[1:] = np.cumsum([len(b) for b in blobs])
    strings = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    lev4, starts4 = _levels(rows[4], np.frombuffer(b"".join(rows[4][2]), dtype=">u4").astype(np.uint32))
    lev6, starts6 = _levels(rows[6], np.array(rows[6][2], dtype="S16"))
    changes = [int(tags.tag_change_numbers.get(n, 0)) for n in names]
    return TagArrays(names, changes, counts, str_off, strings, lev4, starts4, lev6, starts6)


def _levels(rows, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tag = np.array(rows[0], dtype=np.int64)
    length = np.array(rows[1], dtype=np.int64)
    if len(tag) == 0:
        return np.zeros((0, 4), dtype=np.int64), starts[:0]
    order = np.lexsort((starts, length, tag))
    tag, length, starts = tag[order], length[order], starts[order]
    keep = np.ones(len(tag), dtype=bool)
    keep[1:] = (tag[1:] != tag[:-1]) | (length[1:] != length[:-1]) | (starts[1:] != starts[:-1])
    tag, length, starts = tag[keep], length[keep], starts[keep]
    new = np.ones(len(tag), dtype=bool)
    new[1:] = (tag[1:] != tag[:-1]) | (length[1:] != length[:-1])
    first = np.nonzero(new)[0]
    cnt = np.diff(np.append(first, len(tag)))
    lev = np.stack([tag[first], length[first], first, cnt], axis=1).astype(np.int64)
    return lev, starts


def store(folder: Path, sha256: str, tags, arrays: TagArrays) -> Path | None:
    """Write the entry atomically; None (and nothing left behind) when the folder cannot be written."""
    target = entry_path(folder, sha256)
    meta = {"format": FORMAT, "meshpcap": _version(), "sha256": sha256, "change_number": tags.change_number,
            "cloud": tags.cloud, "tags": len(arrays.names)}
    if any("\n" in n for n in arrays.names):
        return None  # names are stored one a line
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                     names=np.frombuffer("\n".join(arrays.names).encode("utf-8"), dtype=np.uint8),
                     changes=np.array(arrays.changes, dtype=np.int64),
                     counts=arrays.counts, str_off=arrays.str_off, strings=arrays.strings,
                     lev4=arrays.lev4, starts4=arrays.starts4, lev6=arrays.lev6,
                     starts6=arrays.starts6.view(np.uint8).reshape(-1, 16))
        os.replace(tmp, target)
        return target
    except (OSError, ValueError):
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return None


def load(folder: Path, sha256: str) -> tuple[dict, TagArrays] | None:
    """(meta, arrays) of the entry for ``sha256``, or None when there is none or it does not read back whole."""
    path = entry_path(folder, sha256)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            if (not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS) or meta["format"] != FORMAT
                    or meta["meshpcap"] != _version() or meta["sha256"] != sha256):
                return None
            if type(meta["change_number"]) is not int or not isinstance(meta["cloud"], str) or type(meta["tags"]) is not int:
                return None
            blob = bytes(z["names"]).decode("utf-8")
            names = blob.split("\n") if blob else []
            changes = z["changes"]
            if len(names) != meta["tags"] or changes.dtype != np.int64 or changes.shape != (len(names),):
                return None
            changes = changes.tolist()
            arrays = {k: z[k] for k in ("counts", "str_off", "strings", "lev4", "starts4", "lev6", "starts6")}
        want = {"counts": np.int64, "str_off": np.int64, "strings": np.uint8, "lev4": np.int64,
                "starts4": np.uint32, "lev6": np.int64, "starts6": np.uint8}
        if any(arrays[k].dtype != np.dtype(t) for k, t in want.items()):
            return None
        s6 = arrays["starts6"]
        if s6.ndim != 2 or s6.shape[1] != 16:
            return None
        arrays["starts6"] = np.ascontiguousarray(s6).view("S16").ravel()
        return meta, TagArrays(names, changes, **arrays)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError):
        return None
    except Exception:  # noqa: BLE001 - a damaged zip can raise from deep inside zipfile/zlib; never trust it
        return None
