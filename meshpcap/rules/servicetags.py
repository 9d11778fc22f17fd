"""Azure Service Tags files (SPEC 4a): load, validate, index every tag's prefixes, find the cached copy."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from meshpcap._dataclass import dataclass
from meshpcap.errors import RuleError
from meshpcap.rules.match import PrefixIndex, parse_prefix

FILE_NAME = re.compile(r"ServiceTags_Public_(\d{8})\.json\Z")


@dataclass(slots=True)
class ServiceTags:
    """One service-tag snapshot: ``tags`` maps tag name to its CIDR strings (IPv4 and IPv6 mixed).

    ``index`` (every tag, all prefixes) is built on first use; per-tag indexes for
    ``contains``/``membership`` likewise. The object is not mutated otherwise.
    """

    file: str
    date: date | None
    change_number: int
    cloud: str
    tags: Mapping[str, tuple[str, ...]]
    tag_change_numbers: dict[str, int] = field(default_factory=dict)
    _parsed: dict[str, list[tuple[int, bytes, int]]] = field(default_factory=dict, repr=False)
    _index: PrefixIndex | None = field(default=None, repr=False)
    _per_tag: dict[str, PrefixIndex] = field(default_factory=dict, repr=False)
    _arrays: Any = field(default=None, repr=False)  # tagcache.TagArrays when read from the binary cache

    @property
    def index(self) -> PrefixIndex:
        """One PrefixIndex over all tags (label = tag name)."""
        if self._index is None:
            a = self._arrays
            if a is not None:
                self._index = PrefixIndex.from_levels(a.all_levels(4), a.all_levels(6), int(a.counts.sum()))
            else:
                self._index = PrefixIndex.from_parsed(
                    (v, packed, n, name) for name in self.tags for v, packed, n in self._prefixes(name)
                )
        return self._index

    def tags_for(self, address: object) -> list[str]:
        """Every tag containing ``address`` (IPv4 or IPv6), widest prefix first."""
        return self.index.lookup(address)  # type: ignore[return-value]

    def tags_for_many(self, addresses: Sequence[object]) -> list[list[str]]:
        return self.index.lookup_many(addresses)  # type: ignore[return-value]

    def tag_index(self, tag: str) -> PrefixIndex:
        """The PrefixIndex of one tag; RuleError when the snapshot has no such tag."""
        found = self._per_tag.get(tag)
        if found is None:
            if tag not in self.tags:
                raise RuleError(self.file, f"no service tag '{tag}' in this file")
            a = self._arrays
            if a is not None:
                i = a.ids[tag]
                found = PrefixIndex.from_unique(*a.levels(i), tag, int(a.counts[i].sum()))
            else:
                found = PrefixIndex.from_parsed((v, packed, n, tag) for v, packed, n in self._prefixes(tag))
            self._per_tag[tag] = found
        return found

    def contains(self, tag: str, address: object) -> bool:
        """True when ``address`` is inside one of ``tag``'s prefixes."""
        return self.tag_index(tag).contains_one(address)

    def membership(self, tag: str, addresses: Sequence[object]) -> np.ndarray:
        """Vectorised ``contains``: boolean array, one entry per address."""
        return self.tag_index(tag).contains_many(addresses)

    def _prefixes(self, tag: str) -> list[tuple[int, bytes, int]]:
        parsed = self._parsed.get(tag)
        if parsed is None:
            parsed = [parse_prefix(p) for p in self.tags[tag]]
        return parsed

    def counts(self, tag: str) -> tuple[int, int]:
        """(IPv4, IPv6) prefix counts of ``tag``."""
        if self._arrays is not None and tag in self._arrays.ids:
            v4, v6 = self._arrays.counts[self._arrays.ids[tag]].tolist()
            return v4, v6
        prefixes = self.tags[tag]
        v6 = sum(1 for p in prefixes if ":" in p)
        return len(prefixes) - v6, v6


def file_date(path: str | Path) -> date | None:
    """The date in a ``ServiceTags_Public_YYYYMMDD.json`` name, or None."""
    m = FILE_NAME.search(Path(path).name)
    if not m:
        return None
    try:
        return date(int(m.group(1)[:4]), int(m.group(1)[4:6]), int(m.group(1)[6:]))
    except ValueError:
        return None


def load_service_tags(path: str | Path, cache: str | Path | None | bool = None) -> ServiceTags:
    """Read and validate a service-tag JSON file (download page or Discovery API shape).

    The parsed index is kept in binary form under the cache directory (``cache``, default
    :func:`cache_dir`; ``False`` for none), keyed by the sha256 of the file's bytes and the meshpcap
    version, so the next load of the same bytes reads arrays instead of parsing JSON (see
    :mod:`meshpcap.rules.tagcache`). The answers are the same either way. The hash of a file that has
    not changed for a few seconds is noted by the file's status (device, inode, size, modification and
    change times), so that loading it again reads only the index, not the 4 MB JSON.
    """
    path = Path(path)
    if cache is False:
        return parse_service_tags(_read(path), str(path), file_date(path))
    from meshpcap.rules import tagcache

    folder = Path(cache) if cache is not None and cache is not True else cache_dir()
    try:
        with open(path, "rb") as fh:
            # a file whose hash was noted for exactly this status (tagcache.noted_sha) is not read again
            st = os.fstat(fh.fileno())
            sha = tagcache.noted_sha(folder, st)
            hit = tagcache.load(folder, sha) if sha is not None else None
            if hit is None:
                data = fh.read()
    except OSError as exc:
        raise RuleError(str(path), f"cannot read: {exc.strerror or exc}") from None
    if hit is None:
        import hashlib  # only here: a run that reads no file to hash needs no OpenSSL (a few ms to load)

        sha = hashlib.sha256(data).hexdigest()
        hit = tagcache.load(folder, sha)
        tagcache.note_sha(folder, st, sha)
    if hit is not None:
        meta, arrays = hit
        return ServiceTags(file=str(path), date=file_date(path), change_number=meta["change_number"],
                           cloud=meta["cloud"], tags=tagcache.LazyTags(arrays),
                           tag_change_numbers=dict(zip(arrays.names, arrays.changes)), _arrays=arrays)
    tags = parse_service_tags(data, str(path), file_date(path))
    store_index(tags, sha, folder)
    return tags


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RuleError(str(path), f"cannot read: {exc.strerror or exc}") from None


def store_index(tags: ServiceTags, sha256: str, cache: str | Path | None = None) -> Path | None:
    """Write the binary index of a parsed snapshot into the cache (None when it cannot be written)."""
    from meshpcap.rules import tagcache

    folder = Path(cache) if cache is not None else cache_dir()
    return tagcache.store(folder, sha256, tags, tagcache.build(tags))


def parse_service_tags(data: bytes, source: str, snapshot_date: date | None = None) -> ServiceTags:
    """Validate the JSON shape of SPEC 4a and every prefix; RuleError names ``source`` and the spot."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuleError(source, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RuleError(source, "not a service-tag file (top level is not an object)")
    doc = {k[:1].lower() + k[1:]: v for k, v in doc.items()}  # PowerShell output is PascalCase
    change = doc.get("changeNumber")
    if not isinstance(change, int) or isinstance(change, bool):
        raise RuleError(source, "not a service-tag file (changeNumber missing or not an integer)")
    cloud = doc.get("cloud", "")
    if not isinstance(cloud, str):
        raise RuleError(source, "cloud: not a string")
    values = doc.get("values")
    if not isinstance(values, list):
        raise RuleError(source, "not a service-tag file (values missing or not a list)")
    tags: dict[str, tuple[str, ...]] = {}
    changes: dict[str, int] = {}
    parsed: dict[str, list[tuple[int, bytes, int]]] = {}
    memo: dict[str, tuple[int, bytes, int]] = {}  # regional and service tags repeat AzureCloud's prefixes
    for i, value in enumerate(values):
        name, prefixes, tag_change, parsed_prefixes = _value(value, i, source, memo)
        if name in tags:
            raise RuleError(source, f"values[{i}]: duplicate tag '{name}'")
        tags[name] = prefixes
        changes[name] = tag_change
        parsed[name] = parsed_prefixes
    tags_file = ServiceTags(file=source, date=snapshot_date, change_number=change, cloud=cloud, tags=tags,
                            tag_change_numbers=changes, _parsed=parsed)
    return tags_file  # the all-tags index (``tags which``) is built on first use: judging needs only a few tags


def _value(
    value: Any, i: int, source: str, memo: dict[str, tuple[int, bytes, int]],
) -> tuple[str, tuple[str, ...], int, list[tuple[int, bytes, int]]]:
    if not isinstance(value, dict):
        raise RuleError(source, f"values[{i}]: not an object")
    value = {k[:1].lower() + k[1:]: v for k, v in value.items()}
    name = value.get("name", value.get("id"))
    if not isinstance(name, str) or not name:
        raise RuleError(source, f"values[{i}]: name missing or not a string")
    props = value.get("properties")
    if not isinstance(props, dict):
        raise RuleError(source, f"values[{i}] ('{name}'): properties missing or not an object")
    props = {k[:1].lower() + k[1:]: v for k, v in props.items()}
    prefixes = props.get("addressPrefixes")
    if not isinstance(prefixes, list):
        raise RuleError(source, f"values[{i}] ('{name}'): properties.addressPrefixes missing or not a list")
    parsed = []
    for j, prefix in enumerate(prefixes):
        try:
            found = memo.get(prefix) if type(prefix) is str else None
            if found is None:
                found = memo[prefix] = parse_prefix(prefix)
            parsed.append(found)
        except ValueError as exc:
            raise RuleError(source, f"values[{i}] ('{name}'): properties.addressPrefixes[{j}]: {exc}") from None
    tag_change = props.get("changeNumber", 0)
    if not isinstance(tag_change, int):
        tag_change = 0
    return name, tuple(prefixes), tag_change, parsed


# -- cache --------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$MESHPCAP_CACHE_DIR, else $XDG_CACHE_HOME/meshpcap, else ~/.cache/meshpcap (not created)."""
    override = os.environ.get("MESHPCAP_CACHE_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshpcap"


def cached_service_tags(cache: str | Path | None = None) -> Path | None:
    """The newest ``ServiceTags_Public_YYYYMMDD.json`` in the cache directory, or None."""
    folder = Path(cache) if cache is not None else cache_dir()
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.iterdir() if FILE_NAME.fullmatch(p.name) and p.is_file())
    return found[-1] if found else None
