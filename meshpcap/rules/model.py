"""Rule records: profiles, rules, expected-traffic groups and port sets (frozen, validated by load.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import field
from datetime import date
from pathlib import Path

import numpy as np

from meshpcap._dataclass import dataclass

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

TRANSPORTS = ("tcp", "udp")
REQUIREMENTS = ("required", "optional", "conditional")


@dataclass(frozen=True, slots=True)
class PortSet:
    """A set of TCP/UDP ports kept as sorted, merged, inclusive ranges.

    ``str()`` shows the ports as they were written (``"443, 80"``, ``"30000-30499"``);
    equality and membership use the merged ranges only.
    """

    ranges: tuple[tuple[int, int], ...]
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, value: int | str | list[int | str] | tuple[int | str, ...]) -> PortSet:
        """Build from an int, ``"a-b"``, ``"80,443"`` or a list of those; ValueError names the bad item."""
        items: list[int | str] = []
        if isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        raw: list[tuple[int, int]] = []
        shown: list[str] = []
        for item in items:
            pieces = item.split(",") if isinstance(item, str) else [item]
            for piece in pieces:
                lo, hi = _parse_port_item(piece)
                raw.append((lo, hi))
                shown.append(str(lo) if lo == hi else f"{lo}-{hi}")
        if not raw:
            raise ValueError("no ports given")
        return cls(_merge(raw), ", ".join(shown))

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> PortSet:
        merged = _merge(list(ranges))
        return cls(merged, ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in merged))

    @classmethod
    def all(cls) -> PortSet:
        return cls(((1, 65535),), "1-65535")

    def __contains__(self, port: object) -> bool:
        if not isinstance(port, (int, np.integer)):
            return False
        return any(lo <= port <= hi for lo, hi in self.ranges)

    def contains_many(self, ports: np.ndarray) -> np.ndarray:
        """Vectorised membership: boolean array, one per port."""
        ports = np.asarray(ports)
        out = np.zeros(ports.shape, dtype=bool)
        for lo, hi in self.ranges:
            out |= (ports >= lo) & (ports <= hi)
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.ranges)

    def __len__(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.ranges)

    def __or__(self, other: PortSet) -> PortSet:
        return PortSet.from_ranges(self.ranges + other.ranges)

    def __str__(self) -> str:
        return self.text or ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ranges)


def _parse_port_item(item: int | str) -> tuple[int, int]:
    if isinstance(item, bool):
        raise ValueError(f"{item!r} is not a port or range")
    if isinstance(item, int):
        lo = hi = item
        shown = str(item)
    elif isinstance(item, str):
        text = item.strip()
        shown = item
        parts = text.split("-")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() and p.strip().isascii() for p in parts):
            raise ValueError(f"'{item}' is not a port or range")
        lo = int(parts[0])
        hi = int(parts[-1])
    else:
        raise ValueError(f"{item!r} is not a port or range")
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError(f"'{shown}' is outside 1-65535")
    if lo > hi:
        raise ValueError(f"'{shown}' has start > end")
    return lo, hi


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Rule:
    """One allow requirement: destinations (names, a service tag, CIDRs) x transports x ports.

    ``port_map`` says which ports go with which transport (an M365 endpoint set can list
    TCP 80,443 and UDP 443); ``transports`` and ``ports`` are its union for display.
    """

    id: str
    description: str
    domains: tuple[str, ...]
    service_tag: str | None
    cidrs: tuple[IPNetwork, ...]
    port_map: tuple[tuple[str, PortSet], ...]
    requirement: str
    expected: str | None
    event: str
    source: str
    any_destination: bool = False
    endpoint_set: int | None = None  # the M365 endpoint-set id this rule was built from (``M365-12``: 12)

    @property
    def transports(self) -> frozenset[str]:
        return frozenset(t for t, _ in self.port_map)

    @property
    def ports(self) -> PortSet:
        sets = [p for _, p in self.port_map]
        if len(sets) == 1:
            return sets[0]
        if all(p == sets[0] for p in sets):
            return sets[0]
        out = sets[0]
        for p in sets[1:]:
            out = out | p
        return out

    def ports_for(self, transport: str) -> PortSet | None:
        """The ports this rule allows on ``transport`` ("tcp"/"udp"), or None."""
        for t, p in self.port_map:
            if t == transport:
                return p
        return None

    def allows(self, transport: str, port: int) -> bool:
        """True when ``transport``/``port`` is within this rule (destination not checked)."""
        ports = self.ports_for(transport)
        return ports is not None and port in ports

    def ports_text(self) -> str:
        """``"TCP 443, 80; UDP 443"`` style summary."""
        return "; ".join(f"{t.upper()} {p}" for t, p in self.port_map)


@dataclass(frozen=True, slots=True)
class ExpectedGroup:
    """Traffic every working session shows: satisfied when any member rule has an allowed flow.

    ``transports``/``ports`` narrow the member rules (e.g. only TCP 443 of an endpoint set that
    also allows TCP 80); ``fallback`` rules, narrowed by ``fallback_transports``/``fallback_ports``,
    satisfy the group as a fallback (e.g. media relay reached over TCP 443 instead of UDP 3478-3481).
    """

    id: str
    description: str
    rules: tuple[str, ...]
    transports: frozenset[str] | None = None
    ports: PortSet | None = None
    fallback: tuple[str, ...] = ()
    fallback_transports: frozenset[str] | None = None
    fallback_ports: PortSet | None = None
    fallback_description: str = ""

    def satisfied_by(self, rule_id: str, transport: str, port: int) -> str | None:
        """``"primary"``, ``"fallback"`` or None for a flow allowed by ``rule_id`` on transport/port."""
        if rule_id in self.rules and _narrow_ok(self.transports, self.ports, transport, port):
            return "primary"
        if rule_id in self.fallback and _narrow_ok(self.fallback_transports, self.fallback_ports, transport, port):
            return "fallback"
        return None


def _narrow_ok(transports: frozenset[str] | None, ports: PortSet | None, transport: str, port: int) -> bool:
    if transports is not None and transport not in transports:
        return False
    return ports is None or port in ports


COMBINE = ("replace", "add")


@dataclass(frozen=True, slots=True)
class EndpointsUse:
    """How Microsoft 365 endpoint files (SPEC 4b) combine with a profile (``[profile.endpoints]``).

    ``combine = "replace"``: the profile's rules that carry an ``endpoint_set`` are rebuilt from
    the file (the sets of ``service_areas`` plus the sets listed in ``ids``); ``"add"``: the file's
    rules are added beside the profile's own. ``expected`` maps endpoint-set ids to the profile's
    expected groups; ``file`` is the endpoints file the shipped rules are generated from (its
    ``YYYYMMDDNN`` version in its name); ``use_cache`` lets a newer cached copy (``meshpcap
    endpoints update``/``import``) replace it.
    """

    combine: str
    service_areas: tuple[str, ...] = ("Skype",)
    ids: tuple[int, ...] = ()
    expected: tuple[tuple[int, str], ...] = ()
    event: str = ""
    file: Path | None = None
    version: str | None = None
    use_cache: bool = False
    title: str = ""  # templates with ``{version}``, formatted for the version in use
    source: str = ""

    def selects(self, service_area: str, set_id: int) -> bool:
        return service_area in self.service_areas or set_id in self.ids

    def group_for(self, set_id: int) -> str | None:
        for i, g in self.expected:
            if i == set_id:
                return g
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    """A named, versioned rule set (one TOML file), e.g. ``multi-room``.

    ``valid_from`` / ``superseded_on`` / ``retired_on`` say when its requirements were in force
    (each with its source); ``superseded_by`` / ``retired_by`` name the profile that followed.
    ``endpoints`` says how Microsoft 365 endpoint files combine with it (None: they are added).
    ``endpoints_version`` is the endpoints version its ``endpoint_set`` rules come from.
    """

    id: str
    title: str
    source: str
    url: str | None
    date: date | None
    notes: str
    rules: tuple[Rule, ...]
    expected: tuple[ExpectedGroup, ...]
    path: Path | None
    default: bool = False
    # ports on which traffic "looks like" this profile's (media) traffic even to an address outside
    # every rule: such a flow is "unexpected", not "unrelated" ([profile] media_ports in the TOML)
    media_ports: tuple[tuple[str, PortSet], ...] = ()

    valid_from: date | None = None
    valid_from_source: str = ""
    superseded_on: date | None = None
    superseded_by: str | None = None
    superseded_source: str = ""
    retired_on: date | None = None
    retired_by: str | None = None
    retired_source: str = ""
    endpoints: EndpointsUse | None = None
    endpoints_version: str | None = None
    endpoints_file: Path | None = None

    @property
    def ended_on(self) -> date | None:
        """The first date on which these requirements no longer applied (superseded or retired)."""
        ends = [d for d in (self.superseded_on, self.retired_on) if d is not None]
        return min(ends) if ends else None

    @property
    def successor(self) -> str | None:
        """The profile in force after :attr:`ended_on`."""
        if self.ended_on is None:
            return None
        if self.superseded_on == self.ended_on and self.superseded_by:
            return self.superseded_by
        return self.retired_by or self.superseded_by

    def looks_like(self, transport: str, port: int | None) -> bool:
        """True when ``transport``/``port`` is one of the profile's ``media_ports``."""
        return port is not None and any(t == transport and port in ps for t, ps in self.media_ports)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def group(self, group_id: str) -> ExpectedGroup:
        for g in self.expected:
            if g.id == group_id:
                return g
        raise KeyError(group_id)
