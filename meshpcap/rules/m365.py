"""Microsoft 365 endpoints files (SPEC 4b, endpoints/worldwide records) and profiles built from them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from meshpcap._dataclass import dataclass
from meshpcap.errors import RuleError
from meshpcap.rules.files import parse_json, read_file
from meshpcap.rules.match import parse_domain_pattern, parse_prefix
import dataclasses
from datetime import date

from meshpcap.rules.model import EndpointsUse, ExpectedGroup, PortSet, Profile, Rule

_VERSION = re.compile(r"(?<!\d)(\d{10})(?!\d)")
SOURCE = "Microsoft 365 URLs and IP address ranges, endpoint set {id}, version {version}"


@dataclass(frozen=True, slots=True)
class EndpointSet:
    """One record of ``GET /endpoints/worldwide``; blank fields are empty / None as in the service."""

    id: int
    service_area: str
    service_area_display_name: str
    urls: tuple[str, ...]
    ips: tuple[str, ...]
    tcp_ports: PortSet | None
    udp_ports: PortSet | None
    category: str
    express_route: bool
    required: bool
    notes: str


def version_from_name(path: str | Path) -> str | None:
    """The ``YYYYMMDDNN`` version in a file name such as ``…docs-2025043000.json``, or None."""
    m = _VERSION.search(Path(path).name)
    return m.group(1) if m else None


def load_m365_endpoints(path: str | Path) -> list[EndpointSet]:
    """Read and validate an endpoints/worldwide JSON file (array of endpoint-set records)."""
    return parse_m365_endpoints(read_file(path), str(path))


def parse_m365_endpoints(data: bytes, src: str) -> list[EndpointSet]:
    """Validate the bytes of an endpoints/worldwide document; RuleError names ``src`` and the record."""
    doc = parse_json(data, src)
    if not isinstance(doc, list):
        raise RuleError(src, "not an endpoints file (top level is not an array of endpoint sets)")
    records = [_record(raw, i, src) for i, raw in enumerate(doc)]
    seen: set[int] = set()
    for r in records:
        if r.id in seen:
            raise RuleError(src, f"endpoint set {r.id}: duplicate id")
        seen.add(r.id)
    return records


def _record(raw: Any, i: int, src: str) -> EndpointSet:
    if not isinstance(raw, dict):
        raise RuleError(src, f"[{i}]: not an object")
    rid = raw.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise RuleError(src, f"[{i}]: id missing or not an integer")
    where = f"endpoint set {rid}"

    def text(key: str, default: str = "") -> str:
        value = raw.get(key, default)
        if not isinstance(value, str):
            raise RuleError(src, f"{where}: {key}: not a string")
        return value

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RuleError(src, f"{where}: {key}: not a list of strings")
        return tuple(value)

    def ports(key: str) -> PortSet | None:
        value = raw.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise RuleError(src, f"{where}: {key}: not a string")
        try:
            return PortSet.parse(value)
        except ValueError as exc:
            raise RuleError(src, f"{where}: {key}: {exc}") from None

    for key in ("expressRoute", "required"):
        if key in raw and not isinstance(raw[key], bool):
            raise RuleError(src, f"{where}: {key}: not true or false")
    ips = strings("ips")
    for ip in ips:
        try:
            parse_prefix(ip)
        except ValueError as exc:
            raise RuleError(src, f"{where}: ips: {exc}") from None
    return EndpointSet(
        id=rid, service_area=text("serviceArea"), service_area_display_name=text("serviceAreaDisplayName"),
        urls=strings("urls"), ips=ips, tcp_ports=ports("tcpPorts"), udp_ports=ports("udpPorts"),
        category=text("category"), express_route=bool(raw.get("expressRoute", False)),
        required=bool(raw.get("required", False)), notes=text("notes"),
    )


def endpoint_rule(record: EndpointSet, version: str | None, event: str = "SR",
                  expected: str | None = None) -> Rule | None:
    """The rule for one endpoint set (None when it has no usable destination or no ports).

    URLs with placeholders (``<tenant>.sharepoint.com``) cannot be matched and are left out.
    """
    domains: list[str] = []
    for url in record.urls:
        try:
            kind, suffix, head = parse_domain_pattern(url)
        except ValueError:
            continue
        domains.append({"exact": suffix, "subdomain": f"*.{suffix}", "prefix": f"*{head}.{suffix}"}[kind])
    port_map = tuple((t, p) for t, p in (("tcp", record.tcp_ports), ("udp", record.udp_ports)) if p is not None)
    if not (domains or record.ips) or not port_map:
        return None
    description = f"{record.service_area_display_name or record.service_area}, endpoint set {record.id} ({record.category})"
    if record.notes:
        description = f"{record.notes} ({record.category})"
    return Rule(
        id=f"M365-{record.id}", description=description, domains=tuple(dict.fromkeys(domains)), service_tag=None,
        cidrs=tuple(ipaddress.ip_network(ip) for ip in record.ips), port_map=port_map,
        requirement="required" if record.required else "optional", expected=expected, event=event,
        source=SOURCE.format(id=record.id, version=version or "unknown"), endpoint_set=record.id,
    )


def profile_from_m365(
    records: Sequence[EndpointSet], version: str | None, service_areas: Iterable[str] = ("Skype",),
    path: Path | None = None,
) -> Profile:
    """Profile ``single-room`` from the endpoint sets of ``service_areas`` (Teams = ``Skype``).

    Expected groups as in rules/single-room.toml: ``teams-service`` (set 12, TCP 443) and
    ``media-relay`` (set 11, UDP 3478-3481; fallback set 12 over TCP 443), when those sets exist.
    """
    areas = set(service_areas)
    chosen = [r for r in records if r.service_area in areas]
    ids = {r.id for r in chosen}
    rules: list[Rule] = []
    for r in chosen:
        expected = {11: "media-relay", 12: "teams-service"}.get(r.id) if areas == {"Skype"} else None
        rule = endpoint_rule(r, version, expected=expected)
        if rule is not None:
            rules.append(rule)
    have = {r.id for r in rules}
    groups: list[ExpectedGroup] = []
    if "M365-12" in have and 12 in ids and areas == {"Skype"}:
        groups.append(ExpectedGroup(
            id="teams-service", description="contacts the Teams service (endpoint set 12) over TCP 443",
            rules=("M365-12",), transports=frozenset({"tcp"}), ports=PortSet.parse(443),
        ))
    if "M365-11" in have and areas == {"Skype"}:
        fallback = ("M365-12",) if "M365-12" in have else ()
        groups.append(ExpectedGroup(
            id="media-relay", description="reaches the Teams media relay (endpoint set 11) on UDP 3478-3481",
            rules=("M365-11",), fallback=fallback,
            fallback_transports=frozenset({"tcp"}) if fallback else None,
            fallback_ports=PortSet.parse(443) if fallback else None,
            fallback_description="client fell back to TCP 443 for the media relay" if fallback else "",
        ))
    # a rule may only name a group that exists
    names = {g.id for g in groups}
    rules = [r if r.expected is None or r.expected in names else _without_expected(r) for r in rules]
    v = version or "unknown"
    return Profile(
        id="single-room",
        title=f"Single-room Mesh-app event (Microsoft 365 endpoints, version {v}, service areas {', '.join(sorted(areas))})",
        source=f"Microsoft 365 URLs and IP address ranges, worldwide endpoints version {v}"
        + (f" ({path})" if path else ""),
        url="https://learn.microsoft.com/microsoft-365/enterprise/urls-and-ip-address-ranges",
        date=None, notes="built from an endpoints/worldwide file (--m365-endpoints)", rules=tuple(rules),
        expected=tuple(groups), path=path,
    )


def _without_expected(rule: Rule) -> Rule:
    fields = {name: getattr(rule, name) for name in Rule.__dataclass_fields__}
    fields["expected"] = None
    return Rule(**fields)


def load_m365_profile(path: str | Path, version: str | None = None, service_areas: Iterable[str] = ("Skype",)) -> Profile:
    """``profile_from_m365`` over a file; the version defaults to the one in the file name."""
    path = Path(path)
    return profile_from_m365(load_m365_endpoints(path), version or version_from_name(path), service_areas, path=path)


def version_date(version: str | None) -> date | None:
    """The date of an endpoints version (``2025043000`` -> 2025-04-30), or None."""
    if not version or not re.fullmatch(r"\d{10}", version):
        return None
    try:
        return date(int(version[:4]), int(version[4:6]), int(version[6:8]))
    except ValueError:
        return None


def rules_for_use(records: Sequence[EndpointSet], use: EndpointsUse, version: str | None) -> list[Rule]:
    """The rules of the endpoint sets ``use`` selects, joined to its expected groups, in file order."""
    out = []
    for record in records:
        if use.selects(record.service_area, record.id):
            rule = endpoint_rule(record, version, event=use.event, expected=use.group_for(record.id))
            if rule is not None:
                out.append(rule)
    return out


def apply_endpoints(profile: Profile, records: Sequence[EndpointSet], version: str | None,
                    path: Path | None = None) -> Profile:
    """``profile`` judged with the endpoint sets of one file, as its ``[profile.endpoints]`` says.

    ``replace``: its ``endpoint_set`` rules give way to the file's; expected groups keep their
    own rules and gain the file's mapped sets (a fallback that names a set the file no longer
    lists is dropped, and so is a group left with no rule at all). ``add`` (also for a profile
    that declares nothing): the file's rules are added; an id the profile already uses is an error.
    Title and source name the version; the profile's date becomes the version's for ``replace``.
    """
    use = profile.endpoints or EndpointsUse(combine="add")
    src = str(path) if path else "endpoints"
    fresh = rules_for_use(records, use, version)
    groups = {g.id for g in profile.expected}
    fresh = [r if r.expected in groups or r.expected is None else _without_expected(r) for r in fresh]
    if use.combine == "replace":
        kept = [r for r in profile.rules if r.endpoint_set is None]
    else:
        kept = list(profile.rules)
    known = {r.id for r in kept}
    for r in fresh:
        if r.id in known:
            raise RuleError(src, f"duplicate id (already in profile '{profile.id}')", rule=r.id, field="id")
    rules = kept + fresh
    ids = {r.id for r in rules}
    expected = []
    for g in profile.expected:
        members = tuple(r.id for r in rules if r.expected == g.id)
        fallback = tuple(f for f in g.fallback if f in ids)
        if not members and not fallback:
            continue
        changes: dict[str, Any] = {"rules": members, "fallback": fallback}
        if not fallback:
            changes.update(fallback_transports=None, fallback_ports=None, fallback_description="")
        expected.append(dataclasses.replace(g, **changes))
    v = version or "unknown"
    changes = {"rules": tuple(rules), "expected": tuple(expected), "endpoints_version": version, "endpoints_file": path}
    if use.combine == "replace":
        if use.title:
            changes["title"] = use.title.format(version=v)
        if use.source:
            changes["source"] = use.source.format(version=v)
        if profile.date is None or profile.date == version_date(profile.endpoints_version):
            changes["date"] = version_date(version) or profile.date  # the profile is dated by its rows
    else:
        changes["source"] = f"{profile.source}; plus Microsoft 365 endpoints version {v}" + (f" ({path.name})" if path else "")
    return dataclasses.replace(profile, **changes)


# -- the cached download (``meshpcap endpoints update`` / ``import``) -----------------------------

CACHE_NAME = re.compile(r"m365-endpoints-worldwide-(\d{10})\.json\Z")


def cached_m365_endpoints(cache: str | Path | None = None) -> tuple[Path, str] | None:
    """(path, version) of the newest ``m365-endpoints-worldwide-YYYYMMDDNN.json`` in the cache, or None."""
    from meshpcap.rules.servicetags import cache_dir

    folder = Path(cache) if cache is not None else cache_dir()
    if not folder.is_dir():
        return None
    found = sorted((m.group(1), p) for p in folder.iterdir() if (m := CACHE_NAME.fullmatch(p.name)) and p.is_file())
    return (found[-1][1], found[-1][0]) if found else None


def resolve_endpoints(profile: Profile, m365_endpoints: str | Path | None = None, use_cache: bool = True,
                      cache: str | Path | None = None) -> Profile:
    """The profile with the endpoint rows that judge the capture.

    An explicit file (``--m365-endpoints``) always applies; otherwise a cached download applies
    when the profile says ``use_cache = true`` and its version is newer than the profile's own.
    """
    if m365_endpoints is not None:
        path = Path(m365_endpoints)
        return apply_endpoints(profile, load_m365_endpoints(path), version_from_name(path), path)
    use = profile.endpoints
    if not use_cache or use is None or not use.use_cache:
        return profile
    found = cached_m365_endpoints(cache)
    if found is None:
        return profile
    path, version = found
    if profile.endpoints_version is not None and version <= profile.endpoints_version:
        return profile
    return apply_endpoints(profile, load_m365_endpoints(path), version, path)
