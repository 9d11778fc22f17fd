"""Load and validate rule profiles (TOML), once; every error names its file, rule and field."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshpcap.decode.names import is_ip_literal, normalize_hostname
from meshpcap.errors import RuleError
from meshpcap.rules.files import TomlError, read_file, toml_document
from meshpcap.rules.match import parse_domain_pattern, parse_prefix
from meshpcap.rules.m365 import load_m365_endpoints, rules_for_use, version_date, version_from_name
from meshpcap.rules.model import COMBINE, REQUIREMENTS, TRANSPORTS, EndpointsUse, ExpectedGroup, PortSet, Profile, Rule

_TOP_KEYS = ("profile", "rule", "expected")
_PROFILE_KEYS = (
    "id", "title", "source", "url", "date", "default", "notes", "valid_from", "valid_from_source", "superseded_on",
    "superseded_by", "superseded_source", "retired_on", "retired_by", "retired_source", "endpoints", "media_ports",
)
_ENDPOINTS_KEYS = ("combine", "service_areas", "ids", "expected", "event", "file", "use_cache")
_RULE_KEYS = (
    "id", "description", "domains", "service_tag", "cidrs", "any_destination", "transport", "ports",
    "tcp_ports", "udp_ports", "requirement", "expected", "event", "source", "endpoint_set",
)
_EXPECTED_KEYS = (
    "id", "description", "transport", "ports", "fallback", "fallback_transport", "fallback_ports",
    "fallback_description",
)
_TAG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def profiles_dir() -> Path:
    """Directory of the shipped profiles: meshpcap/_profiles in a wheel, <repo>/rules in a checkout."""
    package = Path(__file__).resolve().parents[1]  # the meshpcap package directory
    for candidate in (package / "_profiles", package.parent / "rules"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise RuleError(str(package / "_profiles"), "no rule profiles found (looked in meshpcap/_profiles and <repo>/rules)")


def profile_names() -> list[str]:
    """Names of the shipped profiles (file stems), sorted."""
    return sorted(p.stem for p in profiles_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a shipped profile by name (``multi-room``) or any profile file by path."""
    text = str(name_or_path)
    path = Path(text)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or path.is_file():
        if not path.is_file():
            raise RuleError(text, "no such rule file")
        return _load(path, require_profile=True)
    candidate = profiles_dir() / (text if text.endswith(".toml") else f"{text}.toml")
    if not candidate.is_file():
        raise RuleError(f"profile '{text}'", f"unknown profile; known profiles: {', '.join(profile_names())}")
    return _load(candidate, require_profile=True)


def list_profiles() -> list[Profile]:
    """All shipped profiles, the default one first, then by id."""
    profiles = [_load(p, require_profile=True) for p in sorted(profiles_dir().glob("*.toml"))]
    return sorted(profiles, key=lambda p: (not p.default, p.id))


def default_profile() -> Profile:
    """The shipped profile marked ``default = true``."""
    return list_profiles()[0]


def load_rules_file(path: str | Path, base: Profile | None = None) -> Profile:
    """Load extra rules (``--rules FILE``): same format, ``[profile]`` optional.

    With ``base``, rule ids must not clash with the base profile's, and ``expected`` /
    ``fallback`` may refer to the base profile's groups and rules. Merge with ``merge_profiles``.
    """
    path = Path(path)
    if not path.is_file():
        raise RuleError(str(path), "no such rule file")
    return _load(path, require_profile=False, base=base)


def merge_profiles(base: Profile, extra: Profile) -> Profile:
    """``base`` plus the rules and groups of ``extra`` (ids must be distinct)."""
    src = str(extra.path) if extra.path else extra.id
    known = {r.id for r in base.rules}
    for r in extra.rules:
        if r.id in known:
            raise RuleError(src, f"duplicate id (already in profile '{base.id}')", rule=r.id, field="id")
    groups = {g.id: g for g in base.expected}
    for g in extra.expected:
        if g.id in groups:
            raise RuleError(src, f"duplicate id (already in profile '{base.id}')", field=f"expected '{g.id}': id")
        groups[g.id] = g
    # rules of ``extra`` may join groups of ``base``: recompute membership
    extra_members: dict[str, list[str]] = {}
    for r in extra.rules:
        if r.expected:
            extra_members.setdefault(r.expected, []).append(r.id)
    merged = []
    for g in groups.values():
        add = tuple(i for i in extra_members.get(g.id, ()) if i not in g.rules)
        merged.append(_replace_group(g, rules=g.rules + add) if add else g)
    return dataclasses.replace(base, rules=base.rules + extra.rules, expected=tuple(merged),
                               media_ports=base.media_ports or extra.media_ports)


def _replace_group(g: ExpectedGroup, **changes: Any) -> ExpectedGroup:
    fields = {name: getattr(g, name) for name in ExpectedGroup.__dataclass_fields__}
    fields.update(changes)
    return ExpectedGroup(**fields)


# -- parsing ---------------------------------------------------------------------------------


def _load(path: Path, require_profile: bool, base: Profile | None = None) -> Profile:
    src = str(path)
    raw = read_file(path)
    try:
        data = toml_document(_decode_text(raw, src))
    except TomlError as exc:
        raise RuleError(src, f"not valid TOML: {exc}") from None
    return parse_profile_data(data, src, path=path, require_profile=require_profile, base=base)


def _decode_text(raw: bytes, src: str) -> str:
    """A rule file's text: UTF-8 (with or without the BOM Windows Notepad writes) or UTF-16 with its BOM;
    any other encoding is one clear error."""
    if raw.startswith(b"\xef\xbb\xbf"):
        raw, enc = raw[3:], "utf-8"
    elif raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        enc = "utf-16"  # the BOM says which byte order; the codec reads and drops it
    else:
        enc = "utf-8"
    try:
        return raw.decode(enc)
    except UnicodeDecodeError as exc:
        raise RuleError(src, f"not {enc.upper()} text (byte {exc.start}): save it as UTF-8") from None


def parse_profile_data(
    data: dict[str, Any], src: str, path: Path | None = None, require_profile: bool = True,
    base: Profile | None = None,
) -> Profile:
    """Validate an already-parsed TOML document; ``src`` names it in errors."""
    head = _profile_table(data, src, require_profile)
    pid = _str(head.get("id", path.stem if path else "rules"), src, None, "profile: id")
    title = _str(head.get("title", pid), src, None, "profile: title")
    psource = _str(head.get("source", src), src, None, "profile: source")
    url = _str(head["url"], src, None, "profile: url") if "url" in head else None
    notes = _str(head.get("notes", ""), src, None, "profile: notes")
    default = head.get("default", False)
    if not isinstance(default, bool):
        raise RuleError(src, "must be true or false", field="profile: default")
    pdate = _date(head.get("date"), src)
    media_ports = _media_ports(head.get("media_ports", {}), src)
    period = _period(head, src)
    use = _endpoints_use(head.get("endpoints"), src, path, title, psource) if "endpoints" in head else None

    raw_rules = data.get("rule", [])
    raw_groups = data.get("expected", [])
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise RuleError(src, "must be an array of tables ([[rule]])", field="rule")
    if not isinstance(raw_groups, list) or not all(isinstance(g, dict) for g in raw_groups):
        raise RuleError(src, "must be an array of tables ([[expected]])", field="expected")

    base_rules = {r.id for r in base.rules} if base else set()
    base_groups = {g.id for g in base.expected} if base else set()
    group_ids = _group_ids(raw_groups, src, base_groups)
    rules, ids = _rules(raw_rules, src, set(group_ids) | base_groups, base_rules)
    endpoints_version = use.version if use else None
    if use is not None and use.file is not None:  # the rules Microsoft publishes, generated from the file
        rules += _generated_rules(use, src, set(group_ids), ids | base_rules)
        ids |= {r.id for r in rules}
    if use is not None:
        title = use.title.format(version=endpoints_version or "unknown") if use.title else title
        psource = use.source.format(version=endpoints_version or "unknown") if use.source else psource
        if use.combine == "replace" and pdate is None:
            pdate = version_date(endpoints_version)

    groups = [_parse_group(raw, gid, src, rules, ids | base_rules) for raw, gid in zip(raw_groups, group_ids)]
    return Profile(
        id=pid, title=title, source=psource, url=url, date=pdate, notes=notes, rules=tuple(rules),
        expected=tuple(groups), path=path, default=default, media_ports=media_ports, endpoints=use, endpoints_version=endpoints_version,
        endpoints_file=use.file if use else None, **period,
    )


def _profile_table(data: dict[str, Any], src: str, require_profile: bool) -> dict[str, Any]:
    """The ``[profile]`` table of a document whose top-level keys are all known (an empty one for a rules
    file that has none), its keys known and, when ``require_profile``, its ``id`` and ``source`` given."""
    for key in data:
        if key not in _TOP_KEYS:
            raise RuleError(src, f"unknown key (expected one of: {', '.join(_TOP_KEYS)})", field=key)
    head = data.get("profile")
    if head is None:
        if require_profile:
            raise RuleError(src, "missing [profile] table")
        head = {}
    if not isinstance(head, dict):
        raise RuleError(src, "must be a table", field="profile")
    for key in head:
        if key not in _PROFILE_KEYS:
            raise RuleError(src, f"unknown key (expected one of: {', '.join(_PROFILE_KEYS)})", field=f"profile: {key}")
    if require_profile:
        for key in ("id", "source"):
            if key not in head:
                raise RuleError(src, "missing", field=f"profile: {key}")
    return head


def _group_ids(raw_groups: list[dict[str, Any]], src: str, taken: set[str]) -> list[str]:
    """The ids of the ``[[expected]]`` tables, each unique and not one of ``taken`` (the base profile's)."""
    group_ids = [_group_id(g, i, src) for i, g in enumerate(raw_groups, 1)]
    seen: set[str] = set()
    for gid in group_ids:
        if gid in seen or gid in taken:
            raise RuleError(src, "duplicate id", field=f"expected '{gid}': id")
        seen.add(gid)
    return group_ids


def _rules(raw_rules: list[dict[str, Any]], src: str, group_ids: set[str], taken: set[str]) -> tuple[list[Rule], set[str]]:
    """(rules, their ids) of the ``[[rule]]`` tables, each id unique and not one of ``taken``."""
    rules: list[Rule] = []
    ids: set[str] = set()
    for i, raw in enumerate(raw_rules, 1):
        rule = _parse_rule(raw, i, src, group_ids)
        if rule.id in ids or rule.id in taken:
            raise RuleError(src, "duplicate id", rule=rule.id, field="id")
        ids.add(rule.id)
        rules.append(rule)
    return rules, ids


def _generated_rules(use: EndpointsUse, src: str, group_ids: set[str], taken: set[str]) -> list[Rule]:
    """The rules of the endpoint sets ``use`` selects from its ``file`` (ids must not clash with ``taken``)."""
    assert use.file is not None
    for g in sorted({g for _, g in use.expected} - group_ids):
        raise RuleError(src, f"'{g}' is not a defined [[expected]] group", field="profile: endpoints: expected")
    out = rules_for_use(load_m365_endpoints(use.file), use, use.version)
    for rule in out:
        if rule.id in taken:
            raise RuleError(src, f"duplicate id (also generated from {use.file.name})", rule=rule.id, field="id")
    return out


def _period(head: dict[str, Any], src: str) -> dict[str, Any]:
    """``valid_from``, ``superseded_on``/``_by``, ``retired_on``/``_by`` and the source of each date."""
    out: dict[str, Any] = {}
    for key, sfield in (("valid_from", "valid_from_source"), ("superseded_on", "superseded_source"),
                        ("retired_on", "retired_source")):
        out[key] = _date(head.get(key), src, f"profile: {key}")
        out[sfield] = _str(head.get(sfield, ""), src, None, f"profile: {sfield}")
        if out[key] is not None and not out[sfield].strip():
            raise RuleError(src, f"missing (every date must cite its source; {key} is given)", field=f"profile: {sfield}")
        if out[key] is None and out[sfield]:
            raise RuleError(src, f"given without {key}", field=f"profile: {sfield}")
    for stem in ("superseded", "retired"):
        by = head.get(f"{stem}_by")
        if by is not None:
            by = _str(by, src, None, f"profile: {stem}_by")
            if out[f"{stem}_on"] is None:
                raise RuleError(src, f"given without {stem}_on", field=f"profile: {stem}_by")
        out[f"{stem}_by"] = by
    start, ends = out["valid_from"], [d for d in (out["superseded_on"], out["retired_on"]) if d]
    if start is not None and any(d <= start for d in ends):
        raise RuleError(src, "superseded_on / retired_on must come after valid_from", field="profile: valid_from")
    return out


def _endpoints_use(raw: Any, src: str, path: Path | None, title: str, psource: str) -> EndpointsUse:
    where = "profile: endpoints"
    if not isinstance(raw, dict):
        raise RuleError(src, "must be a table", field=where)
    for key in raw:
        if key not in _ENDPOINTS_KEYS:
            raise RuleError(src, f"unknown key (expected one of: {', '.join(_ENDPOINTS_KEYS)})", field=f"{where}: {key}")
    combine = raw.get("combine")
    if combine not in COMBINE:
        raise RuleError(src, f"{combine!r} is not one of {', '.join(COMBINE)}", field=f"{where}: combine")
    areas = _str_list(raw.get("service_areas", ["Skype"]), src, None, f"{where}: service_areas")
    ids = raw.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise RuleError(src, "must be a list of endpoint-set ids (integers)", field=f"{where}: ids")
    expected_raw = raw.get("expected", {})
    if not isinstance(expected_raw, dict):
        raise RuleError(src, "must be a table of endpoint-set id = group id", field=f"{where}: expected")
    expected = []
    for key, group in expected_raw.items():
        if not key.isdigit() or not isinstance(group, str):
            raise RuleError(src, f"{key!r} = {group!r}: give endpoint-set id = \"group id\"", field=f"{where}: expected")
        expected.append((int(key), group))
    use_cache = raw.get("use_cache", False)
    if not isinstance(use_cache, bool):
        raise RuleError(src, "must be true or false", field=f"{where}: use_cache")
    file = None
    version = None
    if "file" in raw:
        name = _str(raw["file"], src, None, f"{where}: file")
        file = (path.parent if path else Path.cwd()) / name
        if not file.is_file():
            raise RuleError(src, f"'{name}': no such endpoints file", field=f"{where}: file")
        version = version_from_name(file)
        if version is None:
            raise RuleError(src, f"'{name}': the file name must carry its version (YYYYMMDDNN)", field=f"{where}: file")
    return EndpointsUse(
        combine=combine, service_areas=tuple(areas), ids=tuple(ids), expected=tuple(expected),
        event=_str(raw.get("event", ""), src, None, f"{where}: event"), file=file, version=version,
        use_cache=use_cache, title=title if "{version}" in title else "", source=psource if "{version}" in psource else "",
    )


def _media_ports(value: Any, src: str) -> tuple[tuple[str, PortSet], ...]:
    """``media_ports = { udp = ["3478-3481"], tcp = [...] }``: the ports that mark the profile's traffic."""
    if not isinstance(value, dict):
        raise RuleError(src, "must be a table such as { udp = [\"3478-3481\"] }", field="profile: media_ports")
    out = []
    for transport, ports in value.items():
        if transport not in TRANSPORTS:
            raise RuleError(src, f"unknown transport (expected one of: {', '.join(TRANSPORTS)})",
                            field=f"profile: media_ports: {transport}")
        try:
            out.append((transport, PortSet.parse(ports)))
        except ValueError as exc:
            raise RuleError(src, str(exc), field=f"profile: media_ports: {transport}") from None
    return tuple(out)


def _str(value: Any, src: str, rule: str | None, field: str) -> str:
    if not isinstance(value, str):
        raise RuleError(src, "must be a string", rule=rule, field=field)
    return value


def _date(value: Any, src: str, field: str = "profile: date") -> date | None:
    if value is None:
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise RuleError(src, f"{value!r} is not a date (YYYY-MM-DD)", field=field)


def _group_id(raw: dict[str, Any], index: int, src: str) -> str:
    gid = raw.get("id")
    if gid is None:
        raise RuleError(src, "missing", field=f"expected #{index}: id")
    if not isinstance(gid, str) or not gid:
        raise RuleError(src, "must be a non-empty string", field=f"expected #{index}: id")
    for key in raw:
        if key not in _EXPECTED_KEYS:
            raise RuleError(src, f"unknown key (expected one of: {', '.join(_EXPECTED_KEYS)})", field=f"expected '{gid}': {key}")
    return gid


def _parse_rule(raw: dict[str, Any], index: int, src: str, groups: set[str]) -> Rule:
    rid = raw.get("id")
    if rid is None:
        raise RuleError(src, "missing", rule=f"#{index}", field="id")
    if not isinstance(rid, str) or not rid.strip():
        raise RuleError(src, "must be a non-empty string", rule=f"#{index}", field="id")
    for key in raw:
        if key not in _RULE_KEYS:
            raise RuleError(src, f"unknown key (expected one of: {', '.join(_RULE_KEYS)})", rule=rid, field=key)
    if "source" not in raw:
        raise RuleError(src, "missing (every rule must cite its source)", rule=rid, field="source")
    source = _str(raw["source"], src, rid, "source")
    if not source.strip():
        raise RuleError(src, "empty (every rule must cite its source)", rule=rid, field="source")
    description = _str(raw.get("description", ""), src, rid, "description")
    event = _str(raw.get("event", ""), src, rid, "event")

    domains = tuple(_domain(d, src, rid) for d in _str_list(raw.get("domains", []), src, rid, "domains"))
    cidrs = tuple(_cidr(c, src, rid) for c in _str_list(raw.get("cidrs", []), src, rid, "cidrs"))
    tag = raw.get("service_tag")
    if tag is not None:
        tag = _str(tag, src, rid, "service_tag")
        if not _TAG_NAME.match(tag):
            raise RuleError(src, f"'{tag}' is not a service tag name", rule=rid, field="service_tag")
    any_dest = raw.get("any_destination", False)
    if not isinstance(any_dest, bool):
        raise RuleError(src, "must be true or false", rule=rid, field="any_destination")
    if any_dest and (domains or cidrs or tag):
        raise RuleError(src, "any_destination = true cannot be combined with domains, service_tag or cidrs", rule=rid)
    if not any_dest and not (domains or cidrs or tag):
        raise RuleError(src, "nothing to match: give domains, service_tag or cidrs (or any_destination = true)", rule=rid)

    port_map = _port_map(raw, src, rid)
    requirement = raw.get("requirement", "required")
    if requirement not in REQUIREMENTS:
        raise RuleError(src, f"{requirement!r} is not one of {', '.join(REQUIREMENTS)}", rule=rid, field="requirement")
    expected = raw.get("expected")
    if expected is not None:
        expected = _str(expected, src, rid, "expected")
        if expected not in groups:
            raise RuleError(src, f"'{expected}' is not a defined [[expected]] group", rule=rid, field="expected")
    endpoint_set = raw.get("endpoint_set")
    if endpoint_set is not None and (not isinstance(endpoint_set, int) or isinstance(endpoint_set, bool)):
        raise RuleError(src, "must be an endpoint-set id (integer)", rule=rid, field="endpoint_set")
    return Rule(
        id=rid, description=description, domains=domains, service_tag=tag, cidrs=cidrs,
        port_map=port_map, requirement=requirement, expected=expected, event=event, source=source,
        any_destination=any_dest, endpoint_set=endpoint_set,
    )


def _str_list(value: Any, src: str, rid: str, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(src, "must be a list of strings", rule=rid, field=field)
    return value


def _domain(pattern: str, src: str, rid: str) -> str:
    try:
        kind, suffix, head = parse_domain_pattern(pattern)
    except ValueError as exc:
        raise RuleError(src, str(exc), rule=rid, field="domains") from None
    return {"exact": suffix, "subdomain": f"*.{suffix}", "prefix": f"*{head}.{suffix}"}[kind]


def _cidr(text: str, src: str, rid: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        parse_prefix(text)
    except ValueError as exc:
        raise RuleError(src, str(exc), rule=rid, field="cidrs") from None
    return ipaddress.ip_network(text)


def _transports(value: Any, src: str, where: str | None, field: str) -> frozenset[str]:
    items = value if isinstance(value, list) else [value]
    out: set[str] = set()
    for item in items:
        if item == "any":
            out.update(TRANSPORTS)
        elif item in TRANSPORTS:
            out.add(item)
        else:
            raise RuleError(src, f"{item!r} is not tcp, udp or any", rule=where, field=field)
    if not out:
        raise RuleError(src, "empty", rule=where, field=field)
    return frozenset(out)


def _ports(value: Any, src: str, where: str | None, field: str) -> PortSet:
    try:
        return PortSet.parse(value)
    except (ValueError, TypeError) as exc:
        raise RuleError(src, str(exc), rule=where, field=field) from None


def _port_map(raw: dict[str, Any], src: str, rid: str) -> tuple[tuple[str, PortSet], ...]:
    split = [t for t in TRANSPORTS if f"{t}_ports" in raw]
    if split:
        if "transport" in raw or "ports" in raw:
            raise RuleError(src, "give either transport + ports or tcp_ports/udp_ports, not both", rule=rid, field="ports")
        return tuple((t, _ports(raw[f"{t}_ports"], src, rid, f"{t}_ports")) for t in split)
    if "transport" not in raw:
        raise RuleError(src, "missing", rule=rid, field="transport")
    transports = _transports(raw["transport"], src, rid, "transport")
    if "ports" not in raw:
        raise RuleError(src, "missing", rule=rid, field="ports")
    ports = _ports(raw["ports"], src, rid, "ports")
    return tuple((t, ports) for t in TRANSPORTS if t in transports)


def _parse_group(raw: dict[str, Any], gid: str, src: str, rules: list[Rule], rule_ids: set[str]) -> ExpectedGroup:
    where = f"expected '{gid}'"
    members = tuple(r.id for r in rules if r.expected == gid)
    fallback = raw.get("fallback", [])
    if not isinstance(fallback, list) or not all(isinstance(f, str) for f in fallback):
        raise RuleError(src, "must be a list of rule ids", field=f"{where}: fallback")
    for f in fallback:
        if f not in rule_ids:
            raise RuleError(src, f"'{f}' is not a rule id", field=f"{where}: fallback")
    if not members and not fallback:
        raise RuleError(src, f"no rule has expected = '{gid}'", field=where)
    for key in ("fallback_transport", "fallback_ports", "fallback_description"):
        if key in raw and not fallback:
            raise RuleError(src, "given without fallback rules", field=f"{where}: {key}")
    return ExpectedGroup(
        id=gid,
        description=_str(raw.get("description", ""), src, None, f"{where}: description"),
        rules=members,
        transports=_transports(raw["transport"], src, None, f"{where}: transport") if "transport" in raw else None,
        ports=_ports(raw["ports"], src, None, f"{where}: ports") if "ports" in raw else None,
        fallback=tuple(fallback),
        fallback_transports=(
            _transports(raw["fallback_transport"], src, None, f"{where}: fallback_transport")
            if "fallback_transport" in raw else None
        ),
        fallback_ports=_ports(raw["fallback_ports"], src, None, f"{where}: fallback_ports") if "fallback_ports" in raw else None,
        fallback_description=_str(raw.get("fallback_description", ""), src, None, f"{where}: fallback_description"),
    )


# -- add-on rules (SPEC 2c) -----------------------------------------------------------------

WS1_SOURCE = (
    'seed doc table "Scenarios with unique allowlisting requirements": "WebSlates require allowing direct traffic to the '
    'sites they render." Later include (2024-07-30+): "WebSlates display web content using a client WebView on each '
    "attendee's device. If their target URLs are blocked for an attendee in a browser, then they will also be blocked in "
    'Mesh." + "If not in SharePoint … the URL domain is in the firewall/allowlist for TCP Port 443 (HTTPS). Attendee client '
    'devices will download from this URL directly."'
)
WS2_SOURCE = (
    'webcontent.md § "Security restrictions" / "WebSlate domain allow-list" (mesh-docs '
    "`mesh/develop/enhance-your-environment/webcontent.md` @7394cd17; moved in Aug 2024 to "
    '`web-content/webslate-performance-and-security.md`). Quote: "Navigation within a WebSlate is exclusively limited to '
    'HTTPS." "WebSlates by default restrict navigation to the URL\'s that are included under the domain of the first page '
    'loaded … a WebSlate launched on https://www.microsoft.com/ will only navigate to pages whose URL\'s start with '
    '"www.microsoft.com"." "Device access to webcam, microphone, and geolocation are blocked."'
)
CS1_SOURCE = (
    'seed doc: "(Optional) If your event uses Cloud scripting … allowing traffic on TCP port 443 (HTTPS) to your hosted '
    'app: `<app>.azurewebsites.net`". mesh-scripting-overview.md: cloud scripting = server-side C# in "a container with an '
    'endpoint that the clients connect to" (cloud-scripting-basic-concepts.md), deployed as App Service (Linux, Docker '
    'image "CloudHost") in the customer\'s Azure subscription. Its IP is an Azure App Service IP, so it is normally also '
    "inside AzureCloud **[inferred]**"
)
_APP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?\Z")


def webslate_rules(urls: Iterable[str], allow_domains: Iterable[str] = ()) -> tuple[Rule, ...]:
    """WS-1 (each WebSlate URL's host) and WS-2 (its "Allowed Domains"), HTTPS over TCP."""
    hosts: list[str] = []
    cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    ports: list[int] = []
    for url in urls:
        text = url.strip()
        parts = urlsplit(text if "://" in text else f"https://{text}")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme != "https" or not parts.hostname or port == -1:
            raise RuleError("--webslate", f"'{url}' is not an https URL (WebSlate navigation is HTTPS only)")
        if is_ip_literal(parts.hostname):
            cidrs.append(ipaddress.ip_network(parts.hostname.strip("[]")))
        else:
            host = normalize_hostname(parts.hostname)
            if host is None:
                raise RuleError("--webslate", f"'{url}' has no valid host name")
            hosts.append(host)
        ports.append(port or 443)
    rules: list[Rule] = []
    if hosts or cidrs:
        rules.append(Rule(
            id="WS-1", description="WebSlate site, direct from each attendee device (HTTPS)",
            domains=tuple(dict.fromkeys(hosts)), service_tag=None, cidrs=tuple(dict.fromkeys(cidrs)),
            port_map=(("tcp", PortSet.parse(sorted(set(ports)))),), requirement="conditional", expected=None,
            event="WS", source=WS1_SOURCE,
        ))
    allowed: list[str] = []
    for pattern in allow_domains:
        try:
            kind, suffix, head = parse_domain_pattern(pattern)
        except ValueError as exc:
            raise RuleError("--webslate-allow", str(exc)) from None
        allowed.append({"exact": suffix, "subdomain": f"*.{suffix}", "prefix": f"*{head}.{suffix}"}[kind])
    if allowed:
        rules.append(Rule(
            id="WS-2", description="WebSlate \"Allowed Domains\" (redirects, sub-domains), HTTPS",
            domains=tuple(dict.fromkeys(allowed)), service_tag=None, cidrs=(), port_map=(("tcp", PortSet.parse(443)),),
            requirement="conditional", expected=None, event="WS", source=WS2_SOURCE,
        ))
    return tuple(rules)


def cloud_scripting_rule(app: str) -> Rule:
    """CS-1: TCP 443 to ``<app>.azurewebsites.net`` (the Mesh Cloud Scripting App Service)."""
    name = app.strip().lower()
    if name.endswith(".azurewebsites.net"):
        name = name[: -len(".azurewebsites.net")]
    if not _APP_NAME.match(name):
        raise RuleError("--cloud-scripting", f"'{app}' is not an App Service name (letters, digits, hyphens; 1-60)")
    return Rule(
        id="CS-1", description="Mesh Cloud Scripting service (Azure App Service), HTTPS",
        domains=(f"{name}.azurewebsites.net",), service_tag=None, cidrs=(), port_map=(("tcp", PortSet.parse(443)),),
        requirement="conditional", expected=None, event="CS", source=CS1_SOURCE,
    )
