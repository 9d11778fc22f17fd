"""Findings a network engineer acts on: blocked, unexpected and missing traffic, each with a fix.

Flows are grouped so that 40 retries to one destination make one finding.  Expected
groups (traffic every working session shows) decide what is ``missing``; the
capture's own shortcomings (started mid-session, one direction only, truncated, cut
by snaplen, drops) become warnings and soften the verdicts that depend on them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from ..flows.model import DnsEvent, FlowTable, endpoint, hops_away
from ..rules.match import RuleMatcher
from ..rules.model import ExpectedGroup, Profile, Rule
from .verdicts import END_GRACE_NS, TAG_UNVERIFIED, Context, FlowVerdict, judge_dns, judge_flow

KINDS = ("blocked", "missing", "unexpected", "degraded")  # degraded: media quality (classify/quality.py)
SEVERITIES = ("error", "warning", "info")
FAIL_ON = ("blocked", "missing", "unexpected", "degraded", "never")  # each includes the kinds before it


@dataclass(frozen=True, slots=True)
class Finding:
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
    status: str  # met | met-by-fallback | blocked | missing
    detail: str
    flow_ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "description": self.description, "status": self.status, "detail": self.detail,
                "flow_ids": list(self.flow_ids)}


@dataclass(slots=True)
class Judgement:
    flows: list[FlowVerdict]
    findings: list[Finding]
    checklist: list[CheckItem]
    groups: list[GroupStatus]
    warnings: list[str]
    verdict: str
    counts: dict[str, int] = field(default_factory=dict)


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


def _capture_warnings(ft: FlowTable) -> tuple[list[str], bool, bool]:
    """Warnings about the capture itself; also (one_direction, mid_session)."""
    c = ft.capture
    warns: list[str] = []
    tcp = [f for f in ft.flows if f.transport == "tcp"]
    midstream = [f for f in tcp if f.orientation not in ("syn", "syn-ack")]
    mid_session = bool(tcp) and len(midstream) >= max(1, len(tcp) // 4)
    if midstream:
        warns.append(
            f"the capture began mid-session: {len(midstream)} of {len(tcp)} TCP flows have no handshake in it, "
            "so their names and outcomes may be unknown, and traffic set up before the capture cannot be checked"
        )
    proxies = sorted({endpoint(f.server, f.server_port) for f in ft.flows if f.connect_target})
    if proxies:
        warns.append(f"HTTPS goes through an explicit proxy at {', '.join(proxies)}: the proxy, not the client, "
                     "connects to the Microsoft endpoints, so its policy and its own firewall path decide what works")
    both = sum(1 for f in ft.flows if f.packets_c2s and f.packets_s2c)
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
    return warns, one_direction, mid_session


def judge(ft: FlowTable, profile: Profile, matcher: RuleMatcher, tags_loaded: bool,
          fail_on: str = "missing") -> Judgement:
    pre_warn, one_direction, mid_session = _capture_warnings(ft)
    ctx = Context(profile, matcher, tags_loaded, ft.capture.get("last_ns"), one_direction,
                  ft.capture.get("dropped_by_capture") or 0)
    verdicts = [judge_flow(f, ctx) for f in ft.flows]
    rules = {r.id: r for r in profile.rules}
    by_id = {v.flow.id: i for i, v in enumerate(verdicts)}

    # DNS failures for names a rule needs: they block the flow that carried the lookup
    dns_fail: list[tuple[DnsEvent, Rule, str]] = []
    for ev in ft.dns:
        res = judge_dns(ev, matcher)
        if res is None:
            continue
        rule, why = res
        if ev.rcode is None and _answer_may_be_uncaptured(ev.ns, ctx):
            # "no answer" rests on what the capture lacks: say so rather than claim a failure
            why = "no answer in the capture (which may simply have missed it)"
        dns_fail.append((ev, rule, why))
        if ev.flow_id is not None and ev.flow_id in by_id:
            i = by_id[ev.flow_id]
            v = verdicts[i]
            if v.verdict == "unrelated":
                verdicts[i] = FlowVerdict(v.flow, "blocked", rule.id, "dns-failure",
                                          f"{ev.qname} ({ev.qtype}): {why} from {ev.server}",
                                          "low" if ev.rcode == "NXDOMAIN" or why.startswith("no answer in")
                                          else "high", "name", ev.qname)

    findings: list[Finding] = []
    groups_of: OrderedDict[tuple, list[FlowVerdict]] = OrderedDict()
    for v in verdicts:
        if v.verdict == "blocked" and v.blocked_by != "dns-failure":
            groups_of.setdefault(("blocked", v.rule, v.destination, v.blocked_by,
                                  v.flow.transport, v.flow.server_port), []).append(v)
        elif v.verdict == "unexpected":
            groups_of.setdefault(("unexpected", v.rule, v.flow.server, v.flow.transport, v.flow.server_port),
                                 []).append(v)
    for key, vs in groups_of.items():
        findings.append(_flow_finding(key[0], vs, rules))
    dns_groups: OrderedDict[tuple, list[tuple[DnsEvent, Rule, str]]] = OrderedDict()
    for item in dns_fail:
        dns_groups.setdefault((item[0].qname, item[2]), []).append(item)
    for (qname, why), items in dns_groups.items():
        ev, rule, _ = items[0]
        severity = "warning" if why == "NXDOMAIN" or why.startswith("no answer in") else "error"
        findings.append(Finding(
            id="", kind="blocked", severity=severity, rule=rule.id, source=rule.source,
            title=f"DNS lookup of {qname} failed: {why}",
            detail=(f"{len(items)} lookup{'s' if len(items) != 1 else ''} of {qname}, a name {rule.id} needs "
                    f"({destination_text(rule)}), got {why} from {ev.server}."),
            fix=(f"make {qname} resolvable for clients: the resolver {ev.server} answered {why}"
                 + ("; check DNS filtering for Microsoft names" if why != "NXDOMAIN" else
                    "; if the name really does not exist this is harmless")),
            flow_ids=tuple(sorted({e.flow_id for e, _, _ in items if e.flow_id is not None})),
            blocked_by="dns-failure", destination=qname,
        ))

    # expected groups: what every working session shows
    group_status: list[GroupStatus] = []
    for g in profile.expected:
        st = _group_status(g, verdicts)
        group_status.append(st)
        if st.status == "missing":
            soft = mid_session or one_direction or bool(ft.capture.get("truncated"))
            findings.append(Finding(
                id="", kind="missing", severity="warning" if soft else "error", rule=",".join(g.rules) or None,
                source=_group_source(g, rules),
                title=f"no traffic: a working session {g.description}",
                detail=("The capture has no flow for " + (", ".join(g.rules) or g.id) + "."
                        + (" The capture itself may be the reason (see warnings)." if soft else "")),
                fix=_missing_fix(g, rules),
                destination=None,
            ))
        elif st.status == "met-by-fallback":
            findings.append(Finding(
                id="", kind="blocked", severity="info", rule=",".join(g.fallback) or None,
                source=_group_source(g, rules, fallback=True),
                title=f"{g.id}: {g.fallback_description or 'met by its fallback only'}",
                detail=st.detail, fix="allow the primary path so the client does not need the fallback: "
                + "; ".join(f"{rules[r].id}: {ports_text(rules[r])} to {destination_text(rules[r])}"
                            for r in g.rules if r in rules),
                flow_ids=st.flow_ids,
            ))

    # a blocked primary path whose group the client reached through its fallback: say so on the finding itself
    for st in group_status:
        if st.status != "met-by-fallback":
            continue
        ids = set(st.flow_ids)
        findings = [replace(f, detail=f"{f.detail} {st.detail[:1].upper()}{st.detail[1:]}.")
                    if f.kind == "blocked" and f.severity != "info" and ids & set(f.flow_ids) else f
                    for f in findings]

    warnings = list(pre_warn)
    if not tags_loaded and any(r.service_tag for r in profile.rules):
        tags = sorted({r.service_tag for r in profile.rules if r.service_tag})
        warnings.insert(0, f"{TAG_UNVERIFIED}: no service-tag snapshot was given or cached, so rules for "
                           f"{', '.join(tags)} were judged on transport and port alone "
                           "(use --service-tags FILE or `meshpcap tags update`)")

    findings = _number(findings)
    checklist = _checklist(profile, verdicts, group_status, dns_fail)
    counts = {k: sum(1 for v in verdicts if v.verdict == k) for k in ("allowed", "blocked", "unexpected", "unrelated")}
    verdict = "fail" if failing(findings, fail_on) else "pass"
    return Judgement(verdicts, findings, checklist, group_status, warnings, verdict, counts)


def _answer_may_be_uncaptured(ns: int, ctx: Context) -> bool:
    """True when a missing answer to something sent at ``ns`` may be the capture's fault."""
    near_end = ctx.capture_last_ns is not None and ctx.capture_last_ns - ns < END_GRACE_NS
    return ctx.one_direction or bool(ctx.dropped) or near_end


def failing(findings: list[Finding], fail_on: str) -> list[Finding]:
    """Findings at or above ``fail_on`` (blocked > missing > unexpected) with severity error
    (unexpected counts at warning too, since it is never an error)."""
    if fail_on == "never":
        return []
    kinds = FAIL_ON[: FAIL_ON.index(fail_on) + 1]
    return [f for f in findings if f.kind in kinds and (f.severity == "error" or
                                                      (f.kind in ("unexpected", "degraded") and f.severity == "warning"))]


def _number(findings: list[Finding]) -> list[Finding]:
    order = {"error": 0, "warning": 1, "info": 2}
    kind_order = {"blocked": 0, "missing": 1, "unexpected": 2}
    findings = sorted(findings, key=lambda f: (order[f.severity], kind_order[f.kind], f.flow_ids[:1] or (1 << 30,)))
    return [replace(f, id=f"F{i}") for i, f in enumerate(findings, start=1)]


_HOW = {
    "no-answer": "got no answer (silently dropped)",
    "rejected": "was rejected with a TCP RST",
    "icmp-unreachable": "was rejected with ICMP",
    "tls-alert": "was refused at TLS right after the ClientHello",
    "proxy-denied": "was refused by the proxy",
    "tls-intercepted": "was intercepted by a TLS-inspecting proxy",
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
                       tuple(x.flow.id for x in vs), v.blocked_by, dest)
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
    return Finding("", "unexpected", "warning", v.rule, src, title, detail, fix, tuple(x.flow.id for x in vs),
                   None, dest)


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
    return base


def _group_status(g: ExpectedGroup, verdicts: list[FlowVerdict]) -> GroupStatus:
    primary, fallback, tried = [], [], []
    relay_servers = set()
    for v in verdicts:
        # an "unexpected" flow only names the rule it fell outside of: it is no attempt at the group
        if not v.rule or v.verdict == "unexpected" or v.flow.transport not in ("tcp", "udp"):
            continue
        port = v.flow.server_port if not v.flow.connect_target else 443
        how = g.satisfied_by(v.rule, v.flow.transport, port or 0)
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
               dns_fail: list) -> list[CheckItem]:
    missing_groups = {g.id for g in groups if g.status == "missing"}
    out = []
    for r in profile.rules:
        vs = [v for v in verdicts if v.rule == r.id]
        allowed = [v for v in vs if v.verdict == "allowed"]
        blocked = [v for v in vs if v.verdict == "blocked"]
        unexpected = [v for v in vs if v.verdict == "unexpected"]
        if any(v.confidence == "high" and v.blocked_by != "dns-failure" for v in blocked):
            status = "blocked"  # some flow under the rule was surely blocked, even if others got through
        elif allowed:
            status = "ok"
        elif blocked or any(rule.id == r.id for _, rule, _ in dns_fail):
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
