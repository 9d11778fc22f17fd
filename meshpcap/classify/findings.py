"""Findings a network engineer acts on: blocked, unexpected and missing traffic, each with a fix,
and the headline verdict: ``pass``, ``fail`` or ``inconclusive``.

Flows are grouped so that 40 retries to one destination make one finding.  Expected
groups (traffic every working session shows) decide what is ``missing``.  The
capture's own shortcomings (started mid-session, one direction only, truncated, cut
by snaplen, drops) become warnings, and each softens only what it can explain:

* a capture that began mid-session explains a TCP flow without a handshake (its name
  may be unknown), so it softens a missing group only when an unnamed mid-session TCP
  flow on a port of the group could have been that group's traffic; it never explains
  absent UDP media or absent 30000-30499 traffic, which a running session shows in any
  window of time;
* a one-direction capture explains missing replies (``no-answer`` verdicts are
  low-confidence), never a missing flow;
* a truncated capture explains what would have come after the cut: a missing group
  only when the cut came less than :data:`SESSION_SETTLE_NS` after the session's first
  traffic.

``judge`` runs the steps in order: flow verdicts, DNS failures, flow findings, expected
groups, the checklist and the headline verdict (:func:`headline`).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import field, replace
from operator import attrgetter
from typing import Any

import numpy as np

from meshpcap._dataclass import dataclass

from ..decode.frames import PROTO_TCP
from ..flows.model import DnsEvent, Flow, FlowTable, endpoint, hops_away
from ..rules.match import RuleMatcher
from ..rules.model import ExpectedGroup, Profile, Rule
from .verdicts import (END_GRACE_NS, TAG_UNVERIFIED, Context, FlowVerdict, Verdicts, _names, judge_dns, judge_flows,
                       judge_records, notable)

KINDS = ("blocked", "missing", "unexpected", "degraded")  # degraded: media quality (classify/quality.py)
SEVERITIES = ("error", "warning", "info")
# --fail-on: each value includes the kinds before it; "warning" is strict (any finding, of any
# severity, or any capture-quality warning fails); "never" fails on nothing. "degraded" (media
# quality, classify/quality.py) also fails on degraded findings, which are warnings by default
FAIL_ON = ("blocked", "missing", "unexpected", "degraded", "warning", "never")
HEADLINE_VERDICTS = ("pass", "fail", "inconclusive")

# A truncated capture explains a missing group only when it was cut this soon after the
# session's first traffic (a running session reaches the relay and media within seconds).
SESSION_SETTLE_NS = 30_000_000_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to act on.  ``severity``: ``error`` when the capture shows it surely,
    ``warning`` when the capture itself may be the reason (low confidence), ``info`` for
    advice (a group met only through its fallback).  ``clients`` are the client addresses
    of the flows or lookups it rests on, ``first_ns``/``last_ns`` the first and last time of
    those attempts (None for ``missing``, which rests on no attempt)."""

    id: str
    kind: str
    severity: str
    rule: str | None
    source: str | None
    title: str
    detail: str
    fix: str
    flow_ids: tuple[int, ...] = ()
    blocked_by: str | None = None
    destination: str | None = None
    clients: tuple[str, ...] = ()
    first_ns: int | None = None
    last_ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "rule": self.rule,
            "source": self.source,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
            "flow_ids": list(self.flow_ids),
            "blocked_by": self.blocked_by,
            "destination": self.destination,
            "clients": list(self.clients),
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
        }


@dataclass(frozen=True, slots=True)
class CheckItem:
    """One rule of the profile and what the capture showed for it."""

    rule: str
    description: str
    destination: str
    ports: str
    requirement: str
    status: str  # ok | blocked | missing | not seen | unexpected
    flows: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "description": self.description,
            "destination": self.destination,
            "ports": self.ports,
            "requirement": self.requirement,
            "status": self.status,
            "flows": self.flows,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class GroupStatus:
    id: str
    description: str
    status: str  # met | met-by-fallback | blocked | missing | not shown (the capture shows no session)
    detail: str
    flow_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "status": self.status, "detail": self.detail,
                "flow_ids": list(self.flow_ids)}


@dataclass(slots=True)
class Judgement:
    """Everything ``judge`` decided.  ``verdict`` is ``pass``, ``fail`` or ``inconclusive``;
    ``reason`` says why when it is inconclusive (what the capture lacks), else None."""

    flows: Sequence[FlowVerdict]  # a list, or (a FlowRecords judged) Verdicts: most made when read
    findings: list[Finding]
    checklist: list[CheckItem]
    groups: list[GroupStatus]
    warnings: list[str]
    verdict: str
    counts: dict[str, int] = field(default_factory=dict)
    reason: str | None = None
    fail_on: str = "missing"


@dataclass(frozen=True, slots=True)
class CaptureQuality:
    """What the capture itself lacks: warnings for the report and the facts that soften verdicts."""

    warnings: tuple[str, ...]
    one_direction: bool
    midstream_tcp: tuple[Flow, ...]  # TCP flows without a handshake in the capture
    truncated: bool


@dataclass(frozen=True, slots=True)
class DnsFailure:
    """A failed lookup of a name a rule needs.  ``uncertain``: the failure may be the capture's
    (no answer in a capture that may have missed it, or NXDOMAIN, which may be harmless)."""

    event: DnsEvent
    rule: Rule
    why: str
    uncertain: bool


def destination_text(rule: Rule) -> str:
    parts = []
    if rule.domains:
        parts.append(", ".join(rule.domains))
    if rule.cidrs:
        cidrs = [str(c) for c in rule.cidrs]
        parts.append(", ".join(cidrs[:4]) + (f" (+{len(cidrs) - 4} more)" if len(cidrs) > 4 else ""))
    if rule.service_tag:
        parts.append(f"the {rule.service_tag} service tag")
    if rule.any_destination:
        parts.append("any destination")
    return "; ".join(parts) or "-"


def ports_text(rule: Rule) -> str:
    return " + ".join(f"{t.upper()} {ps}" for t, ps in rule.port_map)


def _capture_quality(ft: FlowTable) -> CaptureQuality:
    """Warnings about the capture itself, and the facts the verdicts need."""
    c = ft.capture
    warns: list[str] = []
    if hasattr(ft.flows, "judging_columns"):
        tcp, both, proxy_set, mid = _flow_facts_from_columns(ft.flows)
    else:
        tcp, both, proxy_set, mid = 0, 0, set(), []
        facts = attrgetter("transport", "connect_target", "packets_c2s", "packets_s2c")
        for f, (transport, connect_target, c2s, s2c) in zip(ft.flows, map(facts, ft.flows)):
            if transport == "tcp":
                tcp += 1
                if f.orientation not in ("syn", "syn-ack"):
                    mid.append(f)
            if connect_target:
                proxy_set.add(endpoint(f.server, f.server_port))
            if c2s and s2c:
                both += 1
    midstream = tuple(mid)
    if midstream:
        warns.append(
            f"the capture began mid-session: {len(midstream)} of {tcp} TCP flows have no handshake in it, "
            "so their names and outcomes may be unknown, and traffic set up before the capture cannot be checked"
        )
    proxies = sorted(proxy_set)
    if proxies:
        warns.append(f"HTTPS goes through an explicit proxy at {', '.join(proxies)}: the proxy, not the client, "
                     "connects to the Microsoft endpoints, so its policy and its own firewall path decide what works")
    one_direction = bool(ft.flows) and both == 0
    if one_direction:
        warns.append("the capture shows only one direction of traffic (no flow has packets both ways): "
                     "unanswered traffic cannot be told from traffic whose answers were not captured")
    if c.get("truncated"):
        t = c["truncated"]
        warns.append(f"the capture is truncated at record {t.get('record')}: {t.get('reason')}; "
                     "it was analysed up to the cut")
    if c.get("cut_by_snaplen"):
        warns.append(f"{c['cut_by_snaplen']} packets were cut by the snapshot length: names in cut payloads "
                     "may be missing")
    if c.get("dropped_by_capture"):
        warns.append(f"the capturing host reported {c['dropped_by_capture']} dropped packets: "
                     "missing answers may be capture loss")
    und = c.get("undecoded") or {}
    damaged = {k: v for k, v in und.items() if not k.startswith("not IP")}
    if damaged:
        warns.append("packets that could not be decoded: " + ", ".join(f"{k}: {v}" for k, v in damaged.items()))
    return CaptureQuality(tuple(warns), one_direction, midstream, bool(c.get("truncated")))


def _flow_facts_from_columns(records) -> tuple[int, int, set, list[Flow]]:
    """:func:`_capture_quality`'s walk over a FlowRecords, from its columns (a scan has millions of flows):
    (TCP flows, flows with packets both ways, the proxies of CONNECT flows, the TCP flows whose client was
    not chosen by the handshake).  Only those TCP flows and the named flows (a CONNECT target comes from
    the naming stage) are made."""
    from ..flows.records import ORIENTATIONS

    cols = records.judging_columns()
    is_tcp = cols["proto"] == PROTO_TCP
    handshake = np.isin(cols["orientation"], [ORIENTATIONS.index("syn"), ORIENTATIONS.index("syn-ack")])
    mid = records.at(np.flatnonzero(is_tcp & ~handshake))
    proxies = set()
    extras = records.named_extras()
    if extras is not None:  # only the CONNECT flows' records are made
        named = np.array([j for j, x in extras.items() if x.get("connect_target")], np.int64)
    else:
        named = np.flatnonzero(records.named_mask())
    for lo in range(0, named.size, 65536):
        for f in records.at(named[lo:lo + 65536]):
            if f.connect_target:
                proxies.add(endpoint(f.server, f.server_port))
    return int(is_tcp.sum()), int(cols["both_ways"].sum()), proxies, mid


def judge(ft: FlowTable, profile: Profile, matcher: RuleMatcher, tags_loaded: bool,
          fail_on: str = "missing") -> Judgement:
    """Judge every flow and DNS lookup of ``ft`` against ``profile`` and decide the headline.

    ``matcher`` is the profile's :class:`RuleMatcher` (with the service-tag snapshot when
    ``tags_loaded``); ``fail_on`` is one of :data:`FAIL_ON`.
    """
    quality = _capture_quality(ft)
    ctx = Context(profile, matcher, tags_loaded, ft.capture.get("last_ns"), quality.one_direction,
                  ft.capture.get("dropped_by_capture") or 0)
    # a FlowRecords is judged from its columns, its plain unrelated flows never made (a scan has millions)
    verdicts = judge_records(ft.flows, ctx) if hasattr(ft.flows, "judging_columns") else judge_flows(ft.flows, ctx)
    rules = {r.id: r for r in profile.rules}

    dns_fail = _dns_failures(ft, matcher, ctx, verdicts)
    said = notable(verdicts)  # the others are plain "unrelated" verdicts: no finding, no rule, no group
    # the verdicts under a rule: the only ones expected groups, the session start, the session evidence and
    # the checklist look at (a scan of millions of unrelated flows has a few thousand of them)
    ruled = [v for v in said if v.rule]
    findings = _flow_findings(said, rules) + _dns_findings(dns_fail)
    group_status, group_findings = _expected_groups(profile, ruled, rules, quality, ft, dns_fail)
    findings = _note_fallbacks(findings + group_findings, group_status)

    warnings = list(quality.warnings)
    if not tags_loaded and any(r.service_tag for r in profile.rules):
        tags = sorted({r.service_tag for r in profile.rules if r.service_tag})
        warnings.insert(0, f"{TAG_UNVERIFIED}: no service-tag snapshot was given or cached, so rules for "
                           f"{', '.join(tags)} were judged on transport and port alone "
                           "(use --service-tags FILE or `meshpcap tags update`)")

    lacks = _what_the_capture_lacks(ft, ruled, matcher, profile)
    if lacks is not None:
        # no session to judge: no firewall advice ("allow UDP 3478-3481" on an empty file is wrong), and a
        # group without traffic is "not shown" rather than "missing"
        findings = [f for f in findings if f.kind != "missing"]
        group_status = [replace(g, status="not shown", detail="the capture shows no session")
                        if g.status == "missing" else g for g in group_status]
    findings = _number(findings)
    checklist = _checklist(profile, ruled, group_status, dns_fail)
    tally = Counter(v.verdict for v in said)
    tally["unrelated"] += len(verdicts) - len(said)
    counts = {k: tally[k] for k in ("allowed", "blocked", "unexpected", "unrelated")}
    verdict, reason = headline(findings, warnings, group_status, fail_on, lacks)
    return Judgement(verdicts, findings, checklist, group_status, warnings, verdict, counts, reason, fail_on)


def headline(findings: list[Finding], warnings: list[str], groups: list[GroupStatus], fail_on: str,
             lacks: str | None = None) -> tuple[str, str | None]:
    """The headline verdict and, when inconclusive, why.

    1. ``inconclusive`` when the capture cannot show a session at all (``lacks``);
    2. ``fail`` when a finding fails under ``fail_on`` (:func:`failing`), or, with
       ``fail_on="warning"``, when the capture has any capture-quality warning;
    3. ``inconclusive`` when an expected group is unmet (``missing`` or ``blocked``) and its
       kind is within ``fail_on``, but no error-severity finding rests on it: every finding
       about it is softened by what the capture lacks, so the capture cannot tell;
    4. otherwise ``pass``.
    """
    if lacks is not None:
        return "inconclusive", lacks
    if failing(findings, fail_on) or (fail_on == "warning" and warnings):
        return "fail", None
    if fail_on != "never":
        kinds = FAIL_ON[: FAIL_ON.index(fail_on) + 1]
        unsure = []
        for g in groups:
            if g.status == "missing" and "missing" in kinds:
                unsure.append(g.id)
            elif g.status == "blocked" and "blocked" in kinds:
                unsure.append(g.id)
        if unsure:
            return "inconclusive", (f"the capture cannot show whether {', '.join(unsure)} worked: every finding "
                                    "about it may be the capture's own shortcoming (see warnings)")
    return "pass", None


def _what_the_capture_lacks(ft: FlowTable, verdicts: list[FlowVerdict], matcher: RuleMatcher,
                            profile: Profile) -> str | None:
    """Why the capture cannot show a session at all, or None when it can.

    It can when at least one flow falls under a rule of the profile by name, or by address
    under a rule on the primary path of an expected group (TCP 80 to AzureCloud, which no
    session needs, or a TCP 443 fallback alone, is any Azure-hosted web site), or when at
    least one DNS lookup asks for a name a rule covers.  A flow judged on transport and port
    alone (no service-tag snapshot, or a media port to an address outside every rule) does
    not count."""
    c = ft.capture
    packets = c.get("packets")
    if packets == 0:
        return "the capture holds no packets"
    if c.get("decoded") == 0:
        why = ", ".join(f"{k}: {v}" for k, v in (c.get("undecoded") or {}).items())
        return f"none of its {packets} packets could be decoded as IP traffic" + (f" ({why})" if why else "")
    if any(_is_session_evidence(v, profile) for v in verdicts):
        return None
    if any(matcher.by_name(ev.qname) for ev in ft.dns):
        return None
    return (f"not one of its {len(ft.flows)} flows or {len(ft.dns)} DNS lookups touches a destination that a rule "
            f"of {profile.id} covers: the client did not run while it was captured, or the capture point did not "
            "see it")


def _is_session_evidence(v: FlowVerdict, profile: Profile) -> bool:
    """Does this flow show that a session of the profile was running (see _what_the_capture_lacks)?"""
    if not v.rule or v.matched_by in ("port", "media-port"):
        return False
    if v.matched_by == "name" or not profile.expected:
        return True
    port = 443 if v.flow.connect_target else (v.flow.server_port or 0)
    return any(g.satisfied_by(r, v.flow.transport, port) == "primary" for g in profile.expected for r in v.all_rules)


def _dns_failures(ft: FlowTable, matcher: RuleMatcher, ctx: Context,
                  verdicts: Sequence[FlowVerdict]) -> list[DnsFailure]:
    """Failed lookups of names a rule needs.  Each blocks the (otherwise unrelated) flow that
    carried it: ``verdicts`` is updated in place."""
    position = None  # flow id -> index (or None), made at the first failure that names a flow
    out: list[DnsFailure] = []
    for ev in ft.dns:
        res = judge_dns(ev, matcher)
        if res is None:
            continue
        rule, why = res
        uncaptured = ev.rcode is None and _answer_may_be_uncaptured(ev.ns, ctx)
        if uncaptured:
            # "no answer" rests on what the capture lacks: say so rather than claim a failure
            why = "no answer in the capture (which may simply have missed it)"
        failure = DnsFailure(ev, rule, why, uncertain=uncaptured or ev.rcode == "NXDOMAIN")
        out.append(failure)
        if ev.flow_id is not None and position is None:
            position = (verdicts.index_of if isinstance(verdicts, Verdicts)  # ids count from 1 in record order
                        else {v.flow.id: i for i, v in enumerate(verdicts)}.get)
        i = position(ev.flow_id) if ev.flow_id is not None and position is not None else None
        if i is not None and verdicts[i].verdict == "unrelated":
            v = verdicts[i]
            verdicts[i] = FlowVerdict(v.flow, "blocked", rule.id, "dns-failure",
                                      f"{ev.qname} ({ev.qtype}): {why} from {ev.server}",
                                      "low" if failure.uncertain else "high", "name", ev.qname, rules=(rule.id,))
    return out


def _dns_findings(dns_fail: list[DnsFailure]) -> list[Finding]:
    """One finding per name and reason."""
    groups: OrderedDict[tuple, list[DnsFailure]] = OrderedDict()
    for item in dns_fail:
        groups.setdefault((item.event.qname, item.why), []).append(item)
    out = []
    for (qname, why), items in groups.items():
        first = items[0]
        ev, rule = first.event, first.rule
        times = [i.event.ns for i in items]
        out.append(Finding(
            id="", kind="blocked", severity="warning" if first.uncertain else "error", rule=rule.id,
            source=rule.source,
            title=f"DNS lookup of {qname} failed: {why}",
            detail=(f"{len(items)} lookup{'s' if len(items) != 1 else ''} of {qname}, a name {rule.id} needs "
                    f"({destination_text(rule)}), got {why} from {ev.server}."),
            fix=(f"make {qname} resolvable for clients: the resolver {ev.server} answered {why}"
                 + ("; check DNS filtering for Microsoft names" if why != "NXDOMAIN" else
                    "; if the name really does not exist this is harmless")),
            flow_ids=tuple(sorted({i.event.flow_id for i in items if i.event.flow_id is not None})),
            blocked_by="dns-failure", destination=qname,
            clients=tuple(sorted({i.event.client for i in items})), first_ns=min(times), last_ns=max(times),
        ))
    return out


def _flow_findings(verdicts: list[FlowVerdict], rules: dict[str, Rule]) -> list[Finding]:
    """Blocked and unexpected flows, grouped by rule, destination, outcome, transport and port."""
    groups: OrderedDict[tuple, list[FlowVerdict]] = OrderedDict()
    for v in verdicts:
        if v.verdict == "blocked" and v.blocked_by != "dns-failure":
            groups.setdefault(("blocked", v.rule, v.destination, v.blocked_by,
                               v.flow.transport, v.flow.server_port), []).append(v)
        elif v.verdict == "unexpected":
            groups.setdefault(("unexpected", v.rule, v.flow.server, v.flow.transport, v.flow.server_port),
                              []).append(v)
    return [_flow_finding(key[0], vs, rules) for key, vs in groups.items()]


def _expected_groups(profile: Profile, verdicts: list[FlowVerdict], rules: dict[str, Rule],
                     quality: CaptureQuality, ft: FlowTable,
                     dns_fail: list[DnsFailure]) -> tuple[list[GroupStatus], list[Finding]]:
    """The status of every expected group, with a ``missing`` finding for each group no flow
    tried (softened to a warning only when the capture explains the absence) and an ``info``
    finding for each group met only through its fallback."""
    statuses: list[GroupStatus] = []
    findings: list[Finding] = []
    session_start = _session_start(verdicts, dns_fail)
    for g in profile.expected:
        st = _group_status(g, verdicts)
        statuses.append(st)
        if st.status == "missing":
            why = _explains_missing(g, rules, quality, ft, session_start)
            findings.append(Finding(
                id="", kind="missing", severity="warning" if why else "error", rule=",".join(g.rules) or None,
                source=_group_source(g, rules),
                title=f"no traffic: a working session {g.description}",
                detail=("The capture has no flow for " + (", ".join(g.rules) or g.id) + "."
                        + (f" The capture itself may be the reason: {why}." if why else "")),
                fix=_missing_fix(g, rules),
                destination=None,
            ))
        elif st.status == "met-by-fallback":
            by_id = {v.flow.id: v.flow for v in verdicts}
            fl = [by_id[i] for i in st.flow_ids if i in by_id]
            findings.append(Finding(
                id="", kind="blocked", severity="info", rule=",".join(g.fallback) or None,
                source=_group_source(g, rules, fallback=True),
                title=f"{g.id}: {g.fallback_description or 'met by its fallback only'}",
                detail=st.detail, fix="allow the primary path so the client does not need the fallback: "
                + "; ".join(f"{rules[r].id}: {ports_text(rules[r])} to {destination_text(rules[r])}"
                            for r in g.rules if r in rules),
                flow_ids=st.flow_ids, **_when_and_who(fl),
            ))
    return statuses, findings


def _session_start(verdicts: list[FlowVerdict], dns_fail: list[DnsFailure]) -> int | None:
    """The time of the first traffic the profile covers (a flow under a rule or a failed lookup)."""
    times = [v.flow.first_ns for v in verdicts if v.rule and v.matched_by != "port"]
    times += [d.event.ns for d in dns_fail]
    return min(times) if times else None


def _explains_missing(g: ExpectedGroup, rules: dict[str, Rule], quality: CaptureQuality, ft: FlowTable,
                      session_start: int | None) -> str | None:
    """What in the capture explains that group ``g`` has no flow at all, or None (a real absence)."""
    # mid-session: an unnamed TCP flow without a handshake, on a port of the group, to be matched by name
    for f in quality.midstream_tcp:
        if _names(f) or f.server_port is None:
            continue
        named = [rules[r] for r in g.rules if r in rules and rules[r].domains]
        if any(r.allows("tcp", f.server_port) and g.satisfied_by(r.id, "tcp", f.server_port) == "primary"
               for r in named):
            return (f"the capture began mid-session and TCP flow {f.id} to {endpoint(f.server, f.server_port)} has "
                    "no handshake in it, so the name that would place it under " + ", ".join(r.id for r in named)
                    + " is not in the capture")
    last = ft.capture.get("last_ns")
    if quality.truncated and last is not None:
        start = session_start if session_start is not None else ft.capture.get("first_ns")
        if start is not None and last - start < SESSION_SETTLE_NS:
            return (f"the capture is truncated {(last - start) / 1e9:.1f} s after the session's first traffic, "
                    "and this traffic may have come after the cut")
    return None


def _note_fallbacks(findings: list[Finding], groups: list[GroupStatus]) -> list[Finding]:
    """A blocked primary path whose group the client reached through its fallback: say so on the finding."""
    for st in groups:
        if st.status != "met-by-fallback":
            continue
        ids = set(st.flow_ids)
        findings = [replace(f, detail=f"{f.detail} {st.detail[:1].upper()}{st.detail[1:]}.")
                    if f.kind == "blocked" and f.severity != "info" and ids & set(f.flow_ids) else f
                    for f in findings]
    return findings


def _when_and_who(flows: list[Flow]) -> dict[str, Any]:
    """``clients``, ``first_ns`` and ``last_ns`` of a finding that rests on ``flows``."""
    if not flows:
        return {}
    return {"clients": tuple(sorted({f.client for f in flows})), "first_ns": min(f.first_ns for f in flows),
            "last_ns": max(f.last_ns for f in flows)}


def _answer_may_be_uncaptured(ns: int, ctx: Context) -> bool:
    """True when a missing answer to something sent at ``ns`` may be the capture's fault."""
    near_end = ctx.capture_last_ns is not None and ctx.capture_last_ns - ns < END_GRACE_NS
    return ctx.one_direction or bool(ctx.dropped) or near_end


def failing(findings: list[Finding], fail_on: str) -> list[Finding]:
    """The findings that fail under ``fail_on``.

    ``blocked``/``missing``/``unexpected``/``degraded``: findings of that kind or a kind before it
    (blocked > missing > unexpected > degraded) with severity ``error``; warning- and info-severity
    findings never fail, whatever their kind, except ``degraded`` findings (warnings by default)
    under ``degraded``.  ``warning``: every finding (any kind, any
    severity).  ``never``: none.  (With ``warning``, capture-quality warnings also fail the
    headline: see :func:`headline`.)
    """
    if fail_on == "never":
        return []
    if fail_on == "warning":
        return list(findings)
    kinds = FAIL_ON[: FAIL_ON.index(fail_on) + 1]
    # degraded findings are warnings by default (media quality): they fail only when --fail-on names
    # degraded (or warning), never under blocked/missing/unexpected
    return [f for f in findings if f.kind in kinds and (f.severity == "error" or
                                                       (f.kind == "degraded" and f.severity == "warning"))]


def _number(findings: list[Finding]) -> list[Finding]:
    order = {"error": 0, "warning": 1, "info": 2}
    kind_order = {"blocked": 0, "missing": 1, "unexpected": 2}
    findings = sorted(findings, key=lambda f: (order[f.severity], kind_order.get(f.kind, 9),
                                               f.flow_ids[:1] or (1 << 30,)))
    return [replace(f, id=f"F{i}") for i, f in enumerate(findings, start=1)]


_HOW = {
    "no-answer": "got no answer (silently dropped)",
    "rejected": "was rejected with a TCP RST",
    "icmp-unreachable": "was rejected with ICMP",
    "tls-alert": "was refused at TLS right after the ClientHello",
    "proxy-denied": "was refused by the proxy",
    "tls-intercepted": "was intercepted by a TLS-inspecting proxy",
    "relay-refused": "was refused a relay allocation by the TURN server",
}


def _flow_finding(kind: str, vs: list[FlowVerdict], rules: dict[str, Rule]) -> Finding:
    v = vs[0]
    f = v.flow
    rule = rules.get(v.rule) if v.rule else None
    n = len(vs)
    attempts = f"{n} flow{'s' if n != 1 else ''}"
    dest = v.destination or f.server
    if f.connect_target:
        target = f"CONNECT {f.connect_target}"
        where = f"the proxy {endpoint(f.server, f.server_port)}"
    else:
        target = f"{f.transport.upper()} {f.server_port}"
        where = f"{dest}" + (f" ({f.server})" if dest != f.server else "")
    src = rule.source if rule else None
    if kind == "blocked":
        low = all(x.confidence == "low" for x in vs)
        sev = "warning" if low else "error"
        title = f"{target} {'via' if f.connect_target else 'to'} {where} {_HOW.get(v.blocked_by or '', 'failed')}"
        if low:
            title = "possibly blocked: " + title
        detail = f"{v.detail}. {attempts}" + (f"; rule {rule.id}: {rule.description}" if rule else "") + "."
        if v.tag_verified is False and TAG_UNVERIFIED not in detail:
            detail += f" {TAG_UNVERIFIED}."
        fix = _fix(v, rule, vs)
        return Finding("", "blocked", sev, v.rule, src, title, detail, fix,
                       tuple(x.flow.id for x in vs), v.blocked_by, dest, **_when_and_who([x.flow for x in vs]))
    title = f"unexpected {target} {'via' if f.connect_target else 'to'} {where}"
    detail = f"{v.detail}. {attempts}."
    if rule and v.flow.server_port is not None and v.detail and "not in the" in v.detail:
        fix = (f"find out what {f.server} is: {rule.id} allows {ports_text(rule)} only to {destination_text(rule)}; "
               "if it belongs to the event, the service-tag snapshot may be out of date")
    elif rule:
        fix = (f"nothing to open for {rule.id}; the client used a transport or port the profile does not list "
               f"({ports_text(rule)}): if it must work, allow {target} to {destination_text(rule)} or expect the "
               "client to fall back")
    else:
        fix = f"find out which application sends {target} to {f.server}"
    # sure: the flows did go outside the profile (it fails under --fail-on unexpected, as any error does)
    return Finding("", "unexpected", "error", v.rule, src, title, detail, fix, tuple(x.flow.id for x in vs),
                   None, dest, **_when_and_who([x.flow for x in vs]))


def _fix(v: FlowVerdict, rule: Rule | None, vs: list[FlowVerdict]) -> str:
    f = v.flow
    if rule is not None:
        base = f"allow {ports_text(rule)} outbound to {destination_text(rule)}"
    else:
        base = f"allow {f.transport.upper()} {f.server_port} outbound to {f.server}"
    by = v.blocked_by
    if by == "icmp-unreachable":
        e = next((e for x in vs for e in x.flow.icmp_errors), None)
        if e is not None:
            return f"{base}; the firewall at {e.sender} answered ICMP {e.description}"
    if by == "rejected":
        hops = hops_away(f.rst_ttl) if f.rst_from == "server" else None
        who = (f"a firewall {hops} hop{'s' if hops != 1 else ''} from the capture point (RST TTL {f.rst_ttl})"
               if hops is not None and hops <= 2 else "a firewall (or the server)")
        return f"{base}; {who} answered with TCP RST" + (
            f" right after the ClientHello for {f.sni}: remove the SNI filter for it" if f.sni and f.state == "reset" else "")
    if by == "no-answer":
        return f"{base}; packets to {f.server}:{f.server_port} are dropped silently"
    if by == "tls-alert":
        return f"{base}; exempt {f.sni or v.destination} from SNI/TLS filtering (it answered alert {f.tls_alert})"
    if by == "proxy-denied":
        return (f"allow CONNECT to {f.connect_target} on the proxy {f.server}:{f.server_port} "
                f"(it answered HTTP {f.connect_status})" + (f"; rule {rule.id}" if rule else ""))
    if by == "tls-intercepted":
        return f"exempt {f.sni or v.destination} from TLS inspection (certificate issued by {f.cert_issuer})"
    if by == "relay-refused":  # the port was open: the relay (or a TURN-aware proxy) said no by policy
        return (f"the relay {endpoint(f.server, f.server_port)} is reachable but refused the allocation: check the "
                "TURN credentials and the policy of the relay or of any TURN-aware proxy in the path")
    return base


def _group_status(g: ExpectedGroup, verdicts: list[FlowVerdict]) -> GroupStatus:
    """Met (a working flow on the primary path), met-by-fallback, blocked (every attempt failed)
    or missing (no attempt).  A flow counts for the group through any rule it satisfies."""
    primary, fallback, tried = [], [], []
    relay_servers = set()
    hows: dict[tuple, str | None] = {}  # (rules, transport, port) -> how they count for the group
    for v in verdicts:
        # an "unexpected" flow only names the rule it fell outside of: it is no attempt at the group
        if not v.rule or v.verdict == "unexpected" or v.flow.transport not in ("tcp", "udp"):
            continue
        port = v.flow.server_port if not v.flow.connect_target else 443
        key = (v.all_rules, v.flow.transport, port or 0)
        how = hows.get(key, "")
        if how == "":
            ways = {g.satisfied_by(r, key[1], key[2]) for r in key[0]}
            how = hows[key] = "primary" if "primary" in ways else "fallback" if "fallback" in ways else None
        if how == "primary":
            tried.append(v)
            relay_servers.add(v.flow.server)
            if v.verdict == "allowed":
                primary.append(v)
        elif how == "fallback" and v.verdict == "allowed":
            fallback.append(v)
    if primary:
        return GroupStatus(g.id, g.description, "met", f"{len(primary)} working flow(s)",
                           tuple(v.flow.id for v in primary))
    # a fallback counts only when it is the same service: TURN/STUN over TCP, or the same server
    fb = [v for v in fallback if v.flow.stun is not None or v.flow.server in relay_servers]
    if fb:
        failed = [v for v in tried if v.verdict == "blocked"]
        detail = (f"{g.fallback_description or 'met through its fallback'}: "
                  + ", ".join(f"flow {v.flow.id} {v.flow.transport.upper()} {v.flow.server}:{v.flow.server_port}"
                              for v in fb[:3]))
        if failed:
            detail += (f" after {len(failed)} flow(s) on the primary path failed ("
                       + ", ".join(sorted({v.blocked_by or '?' for v in failed})) + ")")
        return GroupStatus(g.id, g.description, "met-by-fallback", detail,
                           tuple(v.flow.id for v in fb + failed))
    if tried:
        return GroupStatus(g.id, g.description, "blocked", "every attempt failed",
                           tuple(v.flow.id for v in tried))
    return GroupStatus(g.id, g.description, "missing", "no flow in the capture")


def _group_source(g: ExpectedGroup, rules: dict[str, Rule], fallback: bool = False) -> str | None:
    """The source of the group's first rule (of its fallback rules with ``fallback``), as the finding's rule."""
    for r in (g.fallback if fallback else g.rules):
        if r in rules:
            return rules[r].source
    return None


def _missing_fix(g: ExpectedGroup, rules: dict[str, Rule]) -> str:
    parts = [f"{rules[r].id}: {ports_text(rules[r])} to {destination_text(rules[r])}" for r in g.rules if r in rules]
    return ("check that the client could reach " + "; ".join(parts)
            + " (if the traffic is not in the capture at all, check that the capture point sees the client and "
              "that the session was running)")


def _checklist(profile: Profile, verdicts: list[FlowVerdict], groups: list[GroupStatus],
               dns_fail: list[DnsFailure]) -> list[CheckItem]:
    """Every rule of the profile with what the capture showed for it (a flow counts under
    every rule it satisfies, not only its primary one)."""
    missing_groups = {g.id for g in groups if g.status == "missing"}
    under: dict[str, list[FlowVerdict]] = {r.id: [] for r in profile.rules}
    for v in verdicts:  # one pass, each verdict under every rule it lists (in order, once per rule)
        for rid in dict.fromkeys(v.all_rules):
            if rid in under:
                under[rid].append(v)
    out = []
    for r in profile.rules:
        vs = under[r.id]
        allowed = [v for v in vs if v.verdict == "allowed"]
        blocked = [v for v in vs if v.verdict == "blocked"]
        unexpected = [v for v in vs if v.verdict == "unexpected"]
        if any(v.confidence == "high" and v.blocked_by != "dns-failure" for v in blocked):
            status = "blocked"  # some flow under the rule was surely blocked, even if others got through
        elif allowed:
            status = "ok"
        elif blocked or any(d.rule.id == r.id for d in dns_fail):
            status = "blocked"
        elif r.expected and r.expected in missing_groups:
            status = "missing"
        elif unexpected:
            status = "unexpected"
        else:
            status = "not seen"
        out.append(CheckItem(r.id, r.description, destination_text(r), ports_text(r), r.requirement, status,
                             len(vs), r.source))
    return out
