"""The service-tag index cached in binary form, so that judging needs no parse of a 4 MB JSON file.

A cache entry is one file under ``<cache dir>/tag-index/``, named by the sha256 of the JSON file's bytes and
the format and meshpcap versions, so a changed file or a new meshpcap simply names another entry. It is a
fixed head (magic, header length, CRC-32 of all that follows), a JSON header (the snapshot's changeNumber and
cloud, the hash and versions, and where each array lies with its dtype and shape) and the raw little-endian
arrays: per tag, each IP version's prefix lengths with their network starts sorted and unique (the arrays
``PrefixIndex`` searches), the prefix strings (decoded per tag when ``tags[name]`` is asked for), prefix counts
and change numbers. Loading reads the file once and takes numpy views of it; a tag's index is a few slices.

An entry is trusted only when it reads back whole: the CRC, the recorded hash, versions, dtypes, shapes and
offsets all agree; anything else (truncated, flipped bits, another layout) counts as a miss, the JSON is
parsed and the entry written again. Entries are written to a temporary file and renamed into place; a cache
directory that cannot be written is skipped without a word (the caller then parses every time).
"""
from __future__ import annotations

import json
import os
import stat
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

FORMAT = 2
_META_KEYS = ("format", "meshpcap", "sha256", "change_number", "cloud", "tags")


def _version() -> str:
    from meshpcap import __version__

    return __version__


def entry_path(folder: Path, sha256: str) -> Path:
    safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in _version())
    return folder / "tag-index" / f"{sha256}-f{FORMAT}-{safe}.bin"


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


MAGIC = b"MESHTAGX"
_HEAD = struct.Struct("<8sII")  # magic, header length, CRC-32 of header + body
# every array of an entry, with its one accepted dtype (little-endian) and number of dimensions
_ARRAYS = {"names": ("|u1", 1), "changes": ("<i8", 1), "counts": ("<i8", 2), "str_off": ("<i8", 1),
           "strings": ("|u1", 1), "lev4": ("<i8", 2), "starts4": ("<u4", 1), "lev6": ("<i8", 2),
           "starts6": ("|S16", 1)}


def pack(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """One entry's bytes: a fixed head, a JSON header (``meta`` and where each array lies), the arrays."""
    layout, chunks, at = {}, [], 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        raw = a.tobytes()
        layout[name] = [at, len(raw), a.dtype.str, list(a.shape)]
        pad = -len(raw) % 8
        chunks.append(raw + b"\0" * pad)
        at += len(raw) + pad
    header = json.dumps(dict(meta, arrays=layout)).encode("utf-8")
    header += b" " * (-(len(header) + _HEAD.size) % 8)
    body = b"".join(chunks)
    return _HEAD.pack(MAGIC, len(header), zlib.crc32(body, zlib.crc32(header))) + header + body


def unpack(data: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """``pack``'s inverse: (meta, arrays as read-only views of ``data``); ValueError unless it reads back whole."""
    if len(data) < _HEAD.size:
        raise ValueError("short")
    magic, hlen, crc = _HEAD.unpack_from(data)
    if magic != MAGIC or _HEAD.size + hlen > len(data):
        raise ValueError("not an entry")
    header = data[_HEAD.size:_HEAD.size + hlen]
    body = memoryview(data)[_HEAD.size + hlen:]
    if zlib.crc32(body, zlib.crc32(header)) != crc:
        raise ValueError("checksum")
    meta = json.loads(header)
    layout = meta.pop("arrays")
    arrays = {}
    for name, (offset, nbytes, dtype, shape) in layout.items():
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if offset < 0 or offset + nbytes > len(body) or count * dt.itemsize != nbytes:
            raise ValueError(f"{name}: out of bounds")
        arrays[name] = np.frombuffer(body, dtype=dt, count=count, offset=offset).reshape(shape)
    return meta, arrays


def store(folder: Path, sha256: str, tags, arrays: TagArrays) -> Path | None:
    """Write the entry atomically; None (and nothing left behind) when the folder cannot be written."""
    target = entry_path(folder, sha256)
    meta = {"format": FORMAT, "meshpcap": _version(), "sha256": sha256, "change_number": tags.change_number,
            "cloud": tags.cloud, "tags": len(arrays.names)}
    if any("\n" in n for n in arrays.names):
        return None  # names are stored one a line
    data = pack(meta, {"names": np.frombuffer("\n".join(arrays.names).encode("utf-8"), dtype=np.uint8),
                       "changes": np.array(arrays.changes, dtype="<i8"), "counts": arrays.counts.astype("<i8"),
                       "str_off": arrays.str_off.astype("<i8"), "strings": arrays.strings,
                       "lev4": arrays.lev4.astype("<i8"), "starts4": arrays.starts4.astype("<u4"),
                       "lev6": arrays.lev6.astype("<i8"), "starts6": arrays.starts6.astype("S16")})
    import tempfile  # only when writing (it pulls in random, shutil: a few ms of every start-up otherwise)

    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".bin", dir=target.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        return target
    except (OSError, ValueError):
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        return None


SETTLED_NS = 2_000_000_000  # a file unchanged for this long gets its hash noted (see note_sha)


def _note_path(folder: Path, st: os.stat_result) -> Path:
    return folder / "tag-index" / f"stat-{st.st_dev}-{st.st_ino}-{st.st_size}-{st.st_mtime_ns}-{st.st_ctime_ns}.sha256"


def noted_sha(folder: Path, st: os.stat_result) -> str | None:
    """The sha256 that :func:`note_sha` noted for a regular file of exactly this status (device, inode, size,
    modification and change times), or None.  Any write to the file changes its change time (which, unlike
    the modification time, cannot be set back), so a file with the same status has the same bytes."""
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        with open(_note_path(folder, st), "rb") as fh:
            text = fh.read(65)
    except OSError:
        return None
    return text.decode("ascii") if len(text) == 64 and all(c in b"0123456789abcdef" for c in text) else None


def note_sha(folder: Path, st: os.stat_result, sha256: str) -> None:
    """Note ``sha256`` as the hash of the regular file of status ``st`` (silently nothing when the folder
    cannot be written).  Only once the file has stood unchanged for :data:`SETTLED_NS`: a file noted within
    one tick of the file system's clock after a write could be written again with the same size in that
    tick, keeping its times (git's "racily clean" entries)."""
    if not stat.S_ISREG(st.st_mode) or time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) < SETTLED_NS:
        return
    target = _note_path(folder, st)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(sha256.encode("ascii"))
        os.replace(tmp, target)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def load(folder: Path, sha256: str) -> tuple[dict, TagArrays] | None:
    """(meta, arrays) of the entry for ``sha256``, or None when there is none or it does not read back whole."""
    try:
        data = entry_path(folder, sha256).read_bytes()
    except OSError:
        return None
    try:
        meta, arrays = unpack(data)
        if (not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS) or meta["format"] != FORMAT
                or meta["meshpcap"] != _version() or meta["sha256"] != sha256):
            return None
        if type(meta["change_number"]) is not int or not isinstance(meta["cloud"], str) or type(meta["tags"]) is not int:
            return None
        if set(arrays) != set(_ARRAYS) or any(arrays[k].dtype.str != t or arrays[k].ndim != nd
                                              for k, (t, nd) in _ARRAYS.items()):
            return None
        blob = arrays.pop("names").tobytes().decode("utf-8")
        names = blob.split("\n") if blob else []
        changes = arrays.pop("changes")
        if len(names) != meta["tags"] or changes.shape != (len(names),):
            return None
        return meta, TagArrays(names, changes.tolist(), **arrays)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError):
        return None
    except Exception:  # noqa: BLE001 - whatever a damaged entry makes numpy or json raise: never trust it
        return None
