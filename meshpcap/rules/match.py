"""Compiled matchers: host-name patterns (suffix dict) and CIDR prefixes (sorted numpy arrays).

Domain pattern semantics (written down here, tested in tests/rules/test_match.py):

* Names are compared lower-cased and without a trailing dot.
* ``example.com`` (exact) matches only ``example.com``.
* ``*.office.com`` (sub-domain wildcard, the M365 "any sub-domain" form) matches any name with
  at least one more label in front: ``a.office.com`` and ``a.b.office.com``; it does NOT match
  ``office.com`` itself, nor ``evil-office.com`` (the match is on whole labels).
* ``*cdn.onenote.net`` (prefix wildcard, SPEC 4b) matches when the name's left-most label ends in
  ``cdn`` and the rest is exactly ``onenote.net``. The ``*`` stays inside one label (as in
  RFC 6125 section 6.4.3) and may be empty: ``xcdn.onenote.net`` and ``cdn.onenote.net`` match,
  ``a.bcdn.onenote.net`` and ``xcdn.a.onenote.net`` do not.

CIDR prefixes either nest or are disjoint, so an address is inside prefix P/L exactly when the
address masked to L bits equals P. ``PrefixIndex`` keeps, per IP version and prefix length, a
sorted array of network starts (IPv4 as uint32, IPv6 as 16-byte big-endian strings, whose byte
order is numeric order) and answers with one ``searchsorted`` per length, for many addresses at once.
Overlapping prefixes are supported: every label whose prefix contains the address is returned.
"""

from __future__ import annotations

import ipaddress
import _socket as socket  # the C module (inet_pton, AF_*): socket.py builds its enums at import, 1 ms
from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from meshpcap.decode.names import normalize_hostname

_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_domain_pattern(pattern: str) -> tuple[str, str, str]:
    """Split a pattern into (kind, suffix, label_prefix); kind is exact | subdomain | prefix.

    Raises ValueError with the reason when the pattern is not one of the three forms.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"{pattern!r} is not a domain pattern")
    text = pattern.strip().lower()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if "*" not in text:
        name = normalize_hostname(text)
        if name is None:
            raise ValueError(f"'{pattern}' is not a valid host name")
        return "exact", name, ""
    if text.count("*") != 1 or not text.startswith("*"):
        raise ValueError(f"'{pattern}' is not a domain pattern (only '*.suffix' or '*prefix.suffix')")
    head, dot, rest = text[1:].partition(".")
    if not dot or not rest:
        raise ValueError(f"'{pattern}' is not a domain pattern (only '*.suffix' or '*prefix.suffix')")
    suffix = normalize_hostname(rest)
    if suffix is None:
        raise ValueError(f"'{pattern}' is not a domain pattern ('{rest}' is not a valid host name)")
    if head == "":
        return "subdomain", suffix, ""
    if not set(head) <= _LABEL_CHARS or len(head) > 62:
        raise ValueError(f"'{pattern}' is not a domain pattern ('{head}' is not part of a label)")
    return "prefix", suffix, head


def _clean(name: str) -> str:
    name = name.strip().lower()
    return name[:-1] if name.endswith(".") else name


class DomainMatcher:
    """Match a host name against many patterns in O(labels) dict lookups.

    ``items`` are patterns or ``(pattern, label)`` pairs (label defaults to the pattern).
    ``match(name)`` returns the labels of every matching pattern, in insertion order.
    """

    __slots__ = ("_exact", "_sub", "_prefix", "_size")

    def __init__(self, items: Iterable[str | tuple[str, Hashable]]) -> None:
        self._exact: dict[str, list[tuple[int, Hashable]]] = {}
        self._sub: dict[str, list[tuple[int, Hashable]]] = {}
        self._prefix: dict[str, list[tuple[int, str, Hashable]]] = {}
        n = 0
        for n, item in enumerate(items, 1):
            pattern, label = (item, item) if isinstance(item, str) else item
            kind, suffix, head = parse_domain_pattern(pattern)
            if kind == "exact":
                self._exact.setdefault(suffix, []).append((n, label))
            elif kind == "subdomain":
                self._sub.setdefault(suffix, []).append((n, label))
            else:
                self._prefix.setdefault(suffix, []).append((n, head, label))
        self._size = n

    def __len__(self) -> int:
        return self._size

    def match(self, name: str) -> list[Hashable]:
        """Labels of all patterns matching ``name`` (empty list when none)."""
        name = _clean(name)
        hits: list[tuple[int, Hashable]] = list(self._exact.get(name, ()))
        first, dot, rest = name.partition(".")
        if dot and self._prefix:
            for n, head, label in self._prefix.get(rest, ()):
                if first.endswith(head):
                    hits.append((n, label))
        if self._sub:
            pos = name.find(".")
            while pos != -1:
                found = self._sub.get(name[pos + 1 :])
                if found:
                    hits.extend(found)
                pos = name.find(".", pos + 1)
        if len(hits) > 1:
            hits.sort(key=lambda h: h[0])
            return list(dict.fromkeys(label for _, label in hits))
        return [label for _, label in hits]


# -- IP prefixes ---------------------------------------------------------------------------


_HOST_BITS = {4: [(1 << (32 - n)) - 1 for n in range(33)], 6: [(1 << (128 - n)) - 1 for n in range(129)]}
_LENGTHS = {str(n): n for n in range(129)}


def parse_prefix(text: str | ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[int, bytes, int]:
    """Parse a CIDR string fast: (version, packed network address, prefix length).

    Strict like ``ipaddress.ip_network``: host bits must be zero. ValueError on anything else.
    A bare address counts as a host prefix (/32 or /128).
    """
    if type(text) is not str:
        if isinstance(text, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            return text.version, text.network_address.packed, text.prefixlen
        raise ValueError(f"{text!r} is not a CIDR prefix")
    addr, slash, plen = text.partition("/")
    version = 6 if ":" in addr else 4
    try:
        if "%" in addr:
            raise OSError
        packed = _pton(socket.AF_INET6 if version == 6 else socket.AF_INET, addr)
    except (OSError, ValueError):
        raise ValueError(f"'{text}' is not a CIDR prefix") from None
    bits = 128 if version == 6 else 32
    length = _LENGTHS.get(plen) if slash else bits
    if length is None or length > bits:
        raise ValueError(f"'{text}' is not a CIDR prefix")
    if int.from_bytes(packed, "big") & _HOST_BITS[version][length]:
        raise ValueError(f"'{text}' has host bits set")
    return version, packed, length


_pton = socket.inet_pton


def _packed_address(address: object) -> bytes:
    if isinstance(address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return address.packed
    if isinstance(address, (bytes, bytearray)) and len(address) in (4, 16):
        return bytes(address)
    if isinstance(address, str):
        try:
            if ":" in address:
                return socket.inet_pton(socket.AF_INET6, address.split("%", 1)[0])
            return socket.inet_pton(socket.AF_INET, address)
        except OSError:
            pass
    raise ValueError(f"{address!r} is not an IP address")


_V4_MASKS = np.array([(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)], dtype=np.uint32)


def _v6_mask(length: int) -> np.ndarray:
    return np.frombuffer(((((1 << 128) - 1) << (128 - length)) & ((1 << 128) - 1)).to_bytes(16, "big"), dtype=np.uint8)


class PrefixIndex:
    """All labels whose CIDR prefix contains an address; built once, looked up vectorised.

    ``items`` are ``(prefix, label)`` pairs; a prefix is a CIDR string or an ipaddress network.
    Labels come back ordered from the shortest (widest) prefix to the longest, each label once.
    """

    __slots__ = ("_v4", "_v6", "_size", "_maps")

    def __init__(self, items: Iterable[tuple[object, Hashable]]) -> None:
        self._build((*parse_prefix(prefix), label) for prefix, label in items)  # type: ignore[arg-type]

    @classmethod
    def from_parsed(cls, items: Iterable[tuple[int, bytes, int, Hashable]]) -> PrefixIndex:
        """Build from ``(version, packed network, length, label)`` as returned by ``parse_prefix``."""
        index = cls.__new__(cls)
        index._build(items)
        return index

    @classmethod
    def from_levels(
        cls, v4: Iterable[tuple[int, np.ndarray, list[Hashable]]], v6: Iterable[tuple[int, np.ndarray, list[Hashable]]],
        size: int,
    ) -> PrefixIndex:
        """Build from per-length arrays of network starts (IPv4 ``uint32``, IPv6 ``S16``), one label per start,
        lengths ascending (the cached service-tag index); ``size`` is what ``len()`` reports."""
        index = cls.__new__(cls)
        index._v4 = [(n, *_level(starts, labels)) for n, starts, labels in v4]
        index._v6 = [(n, *_level(starts, labels)) for n, starts, labels in v6]
        index._size = size
        index._maps = None
        return index

    @classmethod
    def from_unique(cls, v4: Iterable[tuple[int, np.ndarray]], v6: Iterable[tuple[int, np.ndarray]], label: Hashable,
                    size: int) -> PrefixIndex:
        """One label's index from per-length starts already sorted and unique (no copy, no sort)."""
        index = cls.__new__(cls)
        index._v4 = [(n, starts, [(label,)] * len(starts)) for n, starts in v4]
        index._v6 = [(n, starts, [(label,)] * len(starts)) for n, starts in v6]
        index._size = size
        index._maps = None
        return index

    def _build(self, items: Iterable[tuple[int, bytes, int, Hashable]]) -> None:
        v4: dict[int, tuple[list[bytes], list[Hashable]]] = {}
        v6: dict[int, tuple[list[bytes], list[Hashable]]] = {}
        size = 0
        for version, packed, length, label in items:
            size += 1
            level = (v4 if version == 4 else v6).get(length)
            if level is None:
                level = (v4 if version == 4 else v6)[length] = ([], [])
            level[0].append(packed)
            level[1].append(label)
        self._v4 = [
            (n, *_level(np.frombuffer(b"".join(s), dtype=">u4").astype(np.uint32), lab)) for n, (s, lab) in sorted(v4.items())
        ]
        self._v6 = [(n, *_level(np.array(s, dtype="S16"), lab)) for n, (s, lab) in sorted(v6.items())]
        self._size = size
        self._maps = None

    def __len__(self) -> int:
        return self._size

    def _level_maps(self) -> tuple[list, list]:
        """Per prefix length (ascending, as the arrays): (mask, {network start: labels}), IPv4 starts as ints and
        IPv6 as 16 packed bytes; built on the first single-address question (a dict probe per length beats a
        numpy search when there is one address)."""
        if self._maps is None:
            v4 = [(_HOST_BITS[4][n] ^ 0xFFFFFFFF, dict(zip(starts.tolist(), groups))) for n, starts, groups in self._v4]
            v6 = [((1 << 128) - 1 ^ _HOST_BITS[6][n], dict(zip(starts.tolist(), groups))) for n, starts, groups in self._v6]
            self._maps = (v4, v6)
        return self._maps

    def lookup_one(self, address: object) -> list[Hashable]:
        """``lookup`` without numpy: the same labels in the same order."""
        packed = _packed_address(address)
        v4, v6 = self._level_maps()
        out: list[Hashable] = []
        if len(packed) == 4:
            a = int.from_bytes(packed, "big")
            for mask, starts in v4:
                found = starts.get(a & mask)
                if found is not None:
                    out.extend(found)
        else:
            a = int.from_bytes(packed, "big")
            for mask, starts in v6:
                found = starts.get((a & mask).to_bytes(16, "big").rstrip(b"\0"))  # S16 values drop trailing NULs
                if found is not None:
                    out.extend(found)
        return list(dict.fromkeys(out)) if len(out) > 1 else out

    def contains_one(self, address: object) -> bool:
        """``contains_many`` for one address, without numpy."""
        packed = _packed_address(address)
        v4, v6 = self._level_maps()
        a = int.from_bytes(packed, "big")
        if len(packed) == 4:
            return any((a & mask) in starts for mask, starts in v4)
        return any((a & mask).to_bytes(16, "big").rstrip(b"\0") in starts for mask, starts in v6)

    def lookup(self, address: object) -> list[Hashable]:
        """Labels of all prefixes containing ``address`` (str, ipaddress object or packed bytes)."""
        return self.lookup_many([address])[0]

    def lookup_many(self, addresses: Sequence[object]) -> list[list[Hashable]]:
        """``lookup`` for many addresses; one searchsorted per prefix length, not per address."""
        out: list[list[Hashable]] = [[] for _ in range(len(addresses))]
        for pos, groups, idx in self._hits(addresses):
            for p, i in zip(pos.tolist(), idx.tolist()):
                out[p].extend(groups[i])
        for i, labels in enumerate(out):
            if len(labels) > 1:
                out[i] = list(dict.fromkeys(labels))
        return out

    def contains_many(self, addresses: Sequence[object]) -> np.ndarray:
        """Boolean array: is each address inside at least one prefix."""
        found = np.zeros(len(addresses), dtype=bool)
        for pos, _groups, _idx in self._hits(addresses):
            found[pos] = True
        return found

    def contains_v4(self, values: np.ndarray) -> np.ndarray:
        """Vectorised membership for IPv4 addresses given as integers (e.g. a flow table column)."""
        a = np.asarray(values, dtype=np.uint32)
        found = np.zeros(a.shape, dtype=bool)
        for length, starts, _groups in self._v4:
            masked = a & _V4_MASKS[length]
            found |= _search(starts, masked)[0]
        return found

    def contains_columns(self, a4: np.ndarray, a6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``contains_many`` of addresses given as arrays: IPv4 as ``uint32``, IPv6 as rows of 16 bytes
        (``uint8``, shape (n, 16)); a boolean array for each."""
        none = np.zeros(0, dtype=np.int64)
        found4 = np.zeros(len(a4), dtype=bool)
        for pos, _groups, _idx in self._hits_of(np.arange(len(a4)), a4, none, a6[:0]):
            found4[pos] = True
        found6 = np.zeros(len(a6), dtype=bool)
        for pos, _groups, _idx in self._hits_of(none, a4[:0], np.arange(len(a6)), a6):
            found6[pos] = True
        return found4, found6

    def _hits(self, addresses: Sequence[object]):
        packed = [_packed_address(a) for a in addresses]
        pos4 = np.array([i for i, p in enumerate(packed) if len(p) == 4], dtype=np.int64)
        pos6 = np.array([i for i, p in enumerate(packed) if len(p) == 16], dtype=np.int64)
        a4 = np.frombuffer(b"".join(packed[i] for i in pos4.tolist()), dtype=">u4").astype(np.uint32)
        a6 = np.frombuffer(b"".join(packed[i] for i in pos6.tolist()), dtype=np.uint8).reshape(-1, 16)
        yield from self._hits_of(pos4, a4, pos6, a6)

    def _hits_of(self, pos4: np.ndarray, a4: np.ndarray, pos6: np.ndarray, a6: np.ndarray):
        """(positions, label groups, group index) per prefix level with hits, for the IPv4 addresses ``a4``
        at ``pos4`` and the IPv6 ones ``a6`` at ``pos6``."""
        if len(pos4) and self._v4:
            for length, starts, groups in self._v4:
                hit, idx = _search(starts, a4 & _V4_MASKS[length])
                if hit.any():
                    yield pos4[hit], groups, idx[hit]
        if len(pos6) and self._v6:
            for length, starts, groups in self._v6:
                masked = np.ascontiguousarray(a6 & _v6_mask(length)).view("S16").ravel()
                hit, idx = _search(starts, masked)
                if hit.any():
                    yield pos6[hit], groups, idx[hit]


def _level(starts: np.ndarray, labels: list[Hashable]) -> tuple[np.ndarray, list[tuple[Hashable, ...]]]:
    uniq, inverse = np.unique(starts, return_inverse=True)
    groups: list[list[Hashable]] = [[] for _ in range(len(uniq))]
    for g, label in zip(inverse.ravel().tolist(), labels):
        if label not in groups[g]:
            groups[g].append(label)
    return uniq, [tuple(g) for g in groups]


def _search(starts: np.ndarray, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.searchsorted(starts, masked)
    np.minimum(idx, len(starts) - 1, out=idx)
    return starts[idx] == masked, idx


# -- a profile compiled for lookups ------------------------------------------------------------


def _specificity(patterns: Sequence[str], name: str) -> int:
    """How closely the best of ``patterns`` (normalised as load.py writes them) fits ``name``, which one of
    them matches: an exact name beats every wildcard; among wildcards, more labels in the fixed suffix win."""
    best = -1
    for p in patterns:
        if not p.startswith("*"):
            if p == name:
                return 1 << 16
            continue
        head, _, suffix = p[1:].partition(".") if not p.startswith("*.") else ("", "", p[2:])
        if not name.endswith("." + suffix):
            continue
        label = name[: -len(suffix) - 1]
        if head and ("." in label or not label.endswith(head)):
            continue
        best = max(best, 2 * (suffix.count(".") + 1) + (1 if head else 0))
    return best


class RuleMatcher:
    """Which rules of a profile a destination (host name or address) falls under.

    Ports and transports are not checked here: ask ``Rule.allows(transport, port)``.
    ``service_tags`` is a loaded ``ServiceTags`` snapshot (or None: service-tag rules then
    match nothing and their tags are listed in ``unresolved_tags``).
    """

    __slots__ = ("rules", "_names", "_cidrs", "_tagged", "_tags", "any_destination", "unresolved_tags", "_by_address")

    def __init__(self, rules: Sequence, service_tags: object | None = None) -> None:
        self.rules = tuple(rules)
        self._names = DomainMatcher((d, i) for i, r in enumerate(self.rules) for d in r.domains)
        self._cidrs = PrefixIndex((c, i) for i, r in enumerate(self.rules) for c in r.cidrs)
        self.any_destination = tuple(r for r in self.rules if r.any_destination)
        self._tags = service_tags
        known = getattr(service_tags, "tags", {})
        tagged: dict[str, list[int]] = {}
        for i, r in enumerate(self.rules):
            if r.service_tag:
                tagged.setdefault(r.service_tag, []).append(i)
        self._tagged = {t: ids for t, ids in tagged.items() if t in known}
        self.unresolved_tags = tuple(sorted(t for t in tagged if t not in known))
        self._by_address: dict[object, list] = {}  # a capture has few servers and many flows to each

    def by_name(self, name: str) -> list:
        """Rules whose domain patterns match ``name``, the most specific first (an exact name before a
        wildcard, a longer suffix before a shorter one: ``teams.microsoft.com`` before ``*.microsoft.com``),
        then in profile order."""
        ids = sorted(self._names.match(name))
        if len(ids) < 2:
            return [self.rules[i] for i in ids]
        key = name.lower().rstrip(".")
        return [self.rules[i] for i in sorted(ids, key=lambda i: (-_specificity(self.rules[i].domains, key), i))]

    def by_address(self, address: object) -> list:
        """Rules whose CIDRs or service tag contain ``address``, in profile order."""
        found = self._by_address.get(address)
        if found is None:
            hits = set(self._cidrs.lookup_one(address))
            for tag, ids in self._tagged.items():
                if self._tags.contains(tag, address):  # type: ignore[union-attr]
                    hits.update(ids)
            found = self._by_address[address] = [self.rules[i] for i in sorted(hits)]
        return list(found)

    def covers_many(self, addresses: Sequence[object]) -> np.ndarray:
        """Boolean array: does ``by_address`` find any rule for each address (one pass over the prefixes per
        prefix length, not a lookup per address, and nothing cached)."""
        packed = [_packed_address(a) for a in addresses]
        found = self._cidrs.contains_many(packed) if len(self._cidrs) else np.zeros(len(packed), dtype=bool)
        many = getattr(self._tags, "membership", None)
        for tag in self._tagged:
            if many is not None:
                found |= many(tag, packed)
            else:  # a snapshot object with the single-address question only
                found |= np.array([self._tags.contains(tag, a) for a in packed], dtype=bool)  # type: ignore[union-attr]
        return found

    def covers_columns(self, version: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """:meth:`covers_many` of addresses given as columns: the IP version and the address as two 64-bit
        halves (``(hi << 64) | lo``; IPv4 in the low 32 bits of ``lo``), as the flow builder keeps them."""
        v4 = np.asarray(version) == 4
        a4 = (np.asarray(lo)[v4] & 0xFFFFFFFF).astype(np.uint32)
        six = np.empty((int((~v4).sum()), 2), dtype=">u8")
        six[:, 0], six[:, 1] = np.asarray(hi)[~v4], np.asarray(lo)[~v4]
        a6 = six.view(np.uint8).reshape(-1, 16)
        indexes = [self._cidrs] if len(self._cidrs) else []
        if self._tagged and not hasattr(self._tags, "tag_index"):  # a snapshot object without its prefix indexes
            packed = [a.tobytes() for a in a4.astype(">u4")] + [r.tobytes() for r in a6]
            covered = self.covers_many(packed)
            out = np.empty(v4.size, dtype=bool)
            out[v4], out[~v4] = covered[:a4.size], covered[a4.size:]
            return out
        indexes += [self._tags.tag_index(tag) for tag in self._tagged]  # type: ignore[union-attr]
        out4, out6 = np.zeros(a4.size, dtype=bool), np.zeros(a6.shape[0], dtype=bool)
        for index in indexes:
            found4, found6 = index.contains_columns(a4, a6)
            out4 |= found4
            out6 |= found6
        out = np.empty(v4.size, dtype=bool)
        out[v4], out[~v4] = out4, out6
        return out

    def by_address_many(self, addresses: Sequence[object]) -> list[list]:
        hits: list[set[int]] = [set(ids) for ids in self._cidrs.lookup_many(addresses)]  # type: ignore[arg-type]
        for tag, ids in self._tagged.items():
            inside = self._tags.membership(tag, addresses)  # type: ignore[union-attr]
            for k in np.nonzero(inside)[0].tolist():
                hits[k].update(ids)
        return [[self.rules[i] for i in sorted(h)] for h in hits]
