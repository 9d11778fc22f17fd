"""A verdict for every flow: which rule it falls under and whether the network let it through.

Matching order for a flow: the names it carries (SNI, CONNECT target, HTTP Host,
DNS names that resolved to its server before it began) against the rules' domain
patterns; then its server address against the rules' CIDRs and service tags.  A
rule applies when it also lists the flow's transport and destination port.

* ``allowed``: a rule applies and the flow worked.
* ``blocked``: a rule applies (or the flow is Mesh/Teams traffic by name or address)
  and it failed; ``blocked_by`` says how (see :data:`BLOCKED_BY`).
* ``unexpected``: it looks like Mesh traffic but falls outside the profile: one of the
  profile's ``media_ports`` (multi-room: UDP 3478-3481, 30000-30499, TCP 30000-30499)
  to an address outside every rule, or a destination named by the profile on a
  transport or port it does not list.

A flow's ``rule`` is the most specific rule it falls under (for display and grouping);
``rules`` lists every rule it satisfies by name or by address, so that every rule and
expected group that applies sees it.
* ``unrelated``: nothing to do with the profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from meshpcap._dataclass import dataclass

from ..decode.frames import PROTO_TCP, PROTO_UDP
from ..decode.stun import ALLOCATE_RETRY_CODES, ERROR_NAMES
from ..flows.model import DnsEvent, Flow, StunSummary, hops_away, is_admin_prohibited, record_maker
from ..rules.files import toml_document
from ..rules.match import RuleMatcher
from ..rules.model import Profile, Rule

VERDICTS = ("allowed", "blocked", "unexpected", "unrelated")
BLOCKED_BY = ("no-answer", "rejected", "icmp-unreachable", "tls-alert", "proxy-denied", "dns-failure", "tls-intercepted",
              "relay-refused")


def _load_issuers() -> tuple[tuple[str, ...], str]:
    """The issuer substrings of ``issuers.toml`` (beside this module) and the source it cites."""
    doc = toml_document(Path(__file__).with_name("issuers.toml").read_bytes().decode())["issuers"]
    return tuple(s.lower() for s in doc["substrings"]), doc["source"]


# Issuers of the certificates Microsoft's services present (data: issuers.toml, with its source).
# A Microsoft name served with another issuer is being intercepted.
MICROSOFT_ISSUERS, MICROSOFT_ISSUERS_SOURCE = _load_issuers()

# A flow whose first packet came this close to the end of the capture cannot be judged
# "no answer": the capture may have stopped before the answer came.
END_GRACE_NS = 3_000_000_000

TAG_UNVERIFIED = "AzureCloud membership not verified"


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    """A flow with the rule it falls under and what became of it."""

    flow: Flow
    verdict: str
    rule: str | None = None  # the primary rule: the most specific one, for display and grouping
    blocked_by: str | None = None
    detail: str | None = None  # one sentence: what the evidence shows
    confidence: str = "high"  # "low" when the capture itself cannot show the outcome
    # name | address | service-tag | port (no service-tag snapshot: transport and port alone) |
    # media-port ("unexpected": a media port of the profile to an address outside every rule)
    matched_by: str | None = None
    destination: str | None = None  # the name or address the verdict is about
    tag_verified: bool | None = None  # False: AzureCloud judged on transport and port alone
    rules: tuple[str, ...] = ()  # every rule the flow satisfies by name or address (``rule`` first)

    @property
    def all_rules(self) -> tuple[str, ...]:
        """``rules``, or ``(rule,)`` for a verdict built without the list."""
        return self.rules or ((self.rule,) if self.rule else ())

    def to_dict(self) -> dict[str, Any]:
        d = self.flow.to_dict()
        d.update(
            rule=self.rule,
            rules=list(self.all_rules),
            verdict=self.verdict,
            blocked_by=self.blocked_by,
            detail=self.detail,
            confidence=self.confidence,
            matched_by=self.matched_by,
            destination=self.destination,
            tag_verified=self.tag_verified,
        )
        return d


_FIELDS = ("flow", "verdict", "rule", "blocked_by", "detail", "confidence", "matched_by", "destination",
           "tag_verified", "rules")
assert FlowVerdict.__slots__ == _FIELDS, "_unrelated gives every field of FlowVerdict: keep them in step"
_verdict = record_maker(FlowVerdict)


def _unrelated(f: Flow, destination: str) -> FlowVerdict:
    """``FlowVerdict(f, "unrelated", destination=destination)``, made in a fifth of the time (the frozen
    dataclass's ``__init__`` goes through ``object.__setattr__`` field by field; a scan makes millions)."""
    return _verdict((f, "unrelated", None, None, None, "high", None, destination, None, ()))


@dataclass(frozen=True, slots=True)
class Context:
    """What the verdicts need besides the flow."""

    profile: Profile
    matcher: RuleMatcher
    tags_loaded: bool
    capture_last_ns: int | None
    one_direction: bool  # the capture shows (almost) only one direction of traffic
    dropped: int = 0  # packets the capturing host said it dropped: missing answers may be capture loss


def _names(f: Flow) -> tuple[str, ...]:
    """The flow's names, each once, in order of trust: SNI, CONNECT host, HTTP Host, then the DNS names."""
    return tuple(dict.fromkeys(filter(None, (f.sni, _connect_host(f), f.http_host, *(f.dns_names or ())))))


def _connect_host(f: Flow) -> str | None:
    if not f.connect_target:
        return None
    return f.connect_target.rsplit(":", 1)[0].strip("[]")


def _dest_port(f: Flow) -> int | None:
    if f.connect_target:
        try:
            return int(f.connect_target.rsplit(":", 1)[1])
        except ValueError:
            return 443
    return f.server_port


def _rule_rank(r: Rule) -> int:
    """Prefer the most specific rule: names, then CIDRs, then service tags."""
    if r.domains:
        return 0
    if r.cidrs:
        return 1
    return 2


_CHUNK = 65536  # flows judged at a time by judge_flows


def judge_flows(flows: Sequence[Flow], ctx: Context) -> list[FlowVerdict]:
    """``[judge_flow(f, ctx) for f in flows]``, the same verdicts, cheaply for the flows no rule can match.

    A TCP or UDP flow that carries no name and no CONNECT target, to a server address no rule covers (asked
    of the matcher for all such servers at once), is judged by its transport and port alone; that judgement
    is made once per (transport, port), as a table of the 65,536 ports: ``unrelated``, or (a port of a service-tag
    rule without a snapshot, a media port of the profile) the full :func:`judge_flow`.  A scan or a busy
    gateway has millions of such flows."""
    judging = _Judging(ctx)
    out: list[FlowVerdict] = []
    for lo in range(0, len(flows), _CHUNK):  # a chunk at a time: the servers' question stays small
        out += judging.chunk(flows[lo:lo + _CHUNK])
    return out


class _Judging:
    """:func:`judge_flows`' state across its chunks: the port tables and the plans of judge_flow."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tables = {t: _ports_judged_in_full(t, ctx).tolist() for t in ("tcp", "udp")}
        self.plans: dict = {}

    def chunk(self, chunk: Sequence[Flow]) -> list[FlowVerdict]:
        ctx, tables, plans = self.ctx, self.tables, self.plans
        out: list[FlowVerdict] = []
        append = out.append
        plain = [f.transport in ("tcp", "udp") and f.connect_target is None
                 and not (f.sni or f.http_host or f.dns_names) for f in chunk]
        servers = list(dict.fromkeys(f.server for f, p in zip(chunk, plain) if p))
        covered = {a for a, hit in zip(servers, ctx.matcher.covers_many(servers).tolist()) if hit} if servers else set()
        for f, p in zip(chunk, plain):
            if not p or f.server in covered:
                append(judge_flow(f, ctx, plans))
                continue
            port = f.server_port
            if port is None or (0 <= port < 65536 and not tables[f.transport][port]):
                append(_unrelated(f, f.server))
            else:
                append(judge_flow(f, ctx, plans))
        return out


def judge_records(records, ctx: Context) -> "Verdicts":
    """:func:`judge_flows` of a :class:`~meshpcap.flows.records.FlowRecords`, the same verdicts, without a
    :class:`Flow` or a :class:`FlowVerdict` for a plain flow (see ``FlowRecords.plain_mask``: no name,
    no TCP facts, ICMP errors or STUN) over TCP or UDP to a server no rule covers, on a port judged by
    transport and port alone as ``unrelated``: asked of the columns at once.  Every other flow is made
    and judged by :func:`judge_flows`, in record order."""
    cols = records.judging_columns()
    proto, port = cols["proto"], cols["server_port"]
    cand = np.flatnonzero(records.plain_mask() & ((proto == PROTO_TCP) | (proto == PROTO_UDP)))
    unrelated = np.zeros(len(records), dtype=bool)
    if cand.size:
        judged_alone = ~ctx.matcher.covers_columns(cols["ip_version"][cand], cols["server_hi"][cand],
                                                   cols["server_lo"][cand])
        p, cport = proto[cand], port[cand].astype(np.int64)
        for transport, number in (("tcp", PROTO_TCP), ("udp", PROTO_UDP)):
            on = p == number
            judged_alone[on] &= ~_ports_judged_in_full(transport, ctx)[cport[on]]
        unrelated[cand[judged_alone]] = True
    del cols
    rest = np.flatnonzero(~unrelated)
    judging = _Judging(ctx)
    made: dict[int, FlowVerdict] = {}
    for lo in range(0, rest.size, _CHUNK):
        pos = rest[lo:lo + _CHUNK]
        made.update(zip(pos.tolist(), judging.chunk(records.at(pos))))
    return Verdicts(records, unrelated, made)


class Verdicts(Sequence):
    """The verdicts of :func:`judge_records`, in record order, as a sequence of :class:`FlowVerdict`
    (iterating, indexing, ``len()`` and ``==`` behave as on the list :func:`judge_flows` gives; pickled, it
    becomes that list): ``unrelated`` marks the positions whose verdict is ``unrelated`` about the flow's server,
    made only when read; ``made`` holds every other verdict by position.  Setting an item replaces
    its verdict (the DNS failures do)."""

    __slots__ = ("records", "unrelated", "made", "_ordered")

    def __init__(self, records, unrelated: np.ndarray, made: dict[int, FlowVerdict]) -> None:
        self.records = records
        self.unrelated = unrelated
        self.made = made
        self._ordered = True  # made's keys ascending

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        n = len(self)
        if not -n <= i < n:
            raise IndexError("verdict index out of range")
        i %= n
        v = self.made.get(i)
        if v is None:
            f = self.records[i]
            v = _unrelated(f, f.server)
        return v

    def __setitem__(self, i: int, v: FlowVerdict) -> None:
        i %= len(self)
        if i not in self.made:
            self._ordered = False
        self.made[i] = v
        self.unrelated[i] = False

    def __iter__(self):
        made = self.made
        for i, f in enumerate(self.records.stream()):
            v = made.get(i)
            yield _unrelated(f, f.server) if v is None else v

    def __eq__(self, other) -> bool:
        if isinstance(other, (Verdicts, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"<{len(self)} verdicts, {len(self.made)} made>"

    def __reduce__(self):
        """Pickled as the plain list of its verdicts (as FlowRecords is as the list of its records)."""
        return (list, (list(self),))

    def notable(self) -> list[FlowVerdict]:
        """The made verdicts in record order: all but the plain ``unrelated`` ones."""
        if not self._ordered:
            self.made = dict(sorted(self.made.items()))
            self._ordered = True
        return list(self.made.values())

    def index_of(self, flow_id: int) -> int | None:
        """The position of the flow with this id (record ids count from 1 in record order), or None."""
        return flow_id - 1 if 0 < flow_id <= len(self) else None

    def rule_of(self, flow_id: int) -> str | None:
        """The rule of the verdict on the flow with this id (None for an id out of range), without making the
        record of an ``unrelated`` flow, which has none (the media quality asks it of every stream's flow)."""
        i = self.index_of(flow_id)
        if i is None:
            return None
        v = self.made.get(i)
        return None if v is None else v.rule


def notable(verdicts: Sequence[FlowVerdict]) -> Sequence[FlowVerdict]:
    """The verdicts that may say more than ``unrelated`` about a flow's server, in order: every one of a list,
    the made ones of :class:`Verdicts` (what findings, expected groups and the checklist look at)."""
    return verdicts.notable() if isinstance(verdicts, Verdicts) else verdicts


def unrelated_count(verdicts: Sequence[FlowVerdict]) -> int:
    """How many of ``verdicts`` are ``unrelated`` (the ones :func:`notable` leaves out, all unrelated, not made)."""
    said = notable(verdicts)
    return sum(1 for v in said if v.verdict == "unrelated") + len(verdicts) - len(said)


def _ports_judged_in_full(transport: str, ctx: Context) -> np.ndarray:
    """Per destination port (0-65535) of ``transport``: could :func:`judge_flow` say anything but
    ``unrelated`` of a flow on it that has no name, no CONNECT target and a server address no rule covers?
    Yes on a port of a service-tag rule without names or CIDRs when there is no snapshot (judged on
    transport and port alone), and on a media port of the profile when there is one (``unexpected``)."""
    ports = np.arange(65536)
    full = np.zeros(65536, dtype=bool)
    if not ctx.tags_loaded:
        for r in ctx.profile.rules:
            if r.service_tag and not r.domains and not r.cidrs:
                allowed = r.ports_for(transport)
                if allowed is not None:
                    full |= allowed.contains_many(ports)
    else:
        for t, allowed in ctx.profile.media_ports:
            if t == transport:
                full |= allowed.contains_many(ports)
    return full


def judge_flow(f: Flow, ctx: Context, plans: dict | None = None) -> FlowVerdict:
    """The verdict on one flow.  ``plans`` (a dict kept across the flows of one judging, by
    :func:`judge_flows`) holds which rule applies to each destination seen (its names, server, transport
    and port), so that flows to the same destination only have their outcome worked out."""
    if f.transport not in ("tcp", "udp"):
        return FlowVerdict(f, "unrelated")
    port = _dest_port(f)
    names = _names(f)
    via_proxy = f.connect_target is not None
    key = (f.transport, port, names, f.server, via_proxy, not f.quic_version)
    plan = plans.get(key) if plans is not None else None
    if plan is None:
        plan = _plan(f, ctx, port, names, via_proxy)
        if plans is not None:
            if len(plans) >= 1 << 16:  # bounded: a scan of covered addresses has millions of destinations
                plans.clear()
            plans[key] = plan
    if plan[0]:
        _, rule, matched_by, dest, tag_verified, every = plan
        v = _outcome(f, ctx, rule, matched_by, dest, tag_verified, every)
        if tag_verified is False:  # never a silent pass: say what was not checked
            v = replace(v, detail=f"{v.detail}; {TAG_UNVERIFIED}" if v.detail else TAG_UNVERIFIED)
        return v
    return _verdict((f, *plan[1]))


def _plan(f: Flow, ctx: Context, port: int | None, names: tuple[str, ...], via_proxy: bool) -> tuple:
    """What :func:`judge_flow` decides from the flow's destination alone (its names, server, transport,
    port, and whether it is QUIC): (True, rule, matched_by, destination, tag_verified, rules) when a rule
    applies (the outcome then depends on the flow), else (False, every field of the verdict after the flow)."""
    transport = f.transport
    by_name: list[Rule] = []
    for n in names:
        for r in ctx.matcher.by_name(n):
            if r not in by_name:
                by_name.append(r)
    by_addr: list[Rule] = [] if via_proxy else ctx.matcher.by_address(f.server)
    tag_unverified: list[Rule] = []
    if not ctx.tags_loaded and not via_proxy:
        tag_unverified = [r for r in ctx.profile.rules if r.service_tag and not r.domains and not r.cidrs]

    def fits(rules: list[Rule]) -> list[Rule]:
        return sorted((r for r in rules if port is not None and r.allows(transport, port)), key=_rule_rank)

    fit_name, fit_addr = fits(by_name), fits(by_addr)
    applicable = fit_name
    matched_by = "name"
    if not applicable:
        applicable = fit_addr
        matched_by = "address"
        if applicable and applicable[0].service_tag and not applicable[0].cidrs:
            matched_by = "service-tag"
    tag_verified: bool | None = None
    if not applicable and tag_unverified:
        applicable = fits(tag_unverified)
        if applicable:
            matched_by = "port"
            tag_verified = False
    elif applicable and applicable[0].service_tag:
        tag_verified = True

    destination = names[0] if names else f.server
    if applicable:
        rule = applicable[0]
        dest = names[0] if (matched_by == "name" and names) else f.server
        every = tuple(dict.fromkeys(r.id for r in applicable + fit_name + fit_addr))
        return True, rule.id, matched_by, dest, tag_verified, every

    # a destination the profile names, on a transport or port it does not list
    named = [r for r in by_name + [r for r in by_addr if r.domains or r.cidrs]]
    if named:
        r = named[0]
        detail = (f"{destination} is covered by {r.id} ({r.ports_text()}), but this flow used "
                  f"{transport.upper()} {port}" + (" (QUIC)" if f.quic_version else ""))
        return False, ("unexpected", r.id, None, detail, "high", "name" if by_name else "address", destination, None,
                       (r.id,))
    if ctx.profile.looks_like(transport, port) and not via_proxy:
        if ctx.tags_loaded:
            detail = (f"{transport.upper()} {port} is a media port of the profile, but {f.server} is in no rule "
                      "of the profile")
            tag_rules = [r for r in ctx.profile.rules if r.service_tag and r.allows(transport, port)]
            if tag_rules:
                detail += f" (not in the {tag_rules[0].service_tag} service tag)"
                return False, ("unexpected", tag_rules[0].id, None, detail, "high", "media-port", f.server, True,
                               (tag_rules[0].id,))
            return False, ("unexpected", None, None, detail, "high", None, f.server, None, ())
    return False, ("unrelated", None, None, None, "high", None, destination, None, ())


def _outcome(f: Flow, ctx: Context, rule: str, matched_by: str, dest: str, tag_verified: bool | None,
             rules: tuple[str, ...] = ()) -> FlowVerdict:
    """Did the flow work?  Evidence in order of strength."""
    low = "high"

    def blocked(by: str, detail: str, confidence: str = "high") -> FlowVerdict:
        return _verdict((f, "blocked", rule, by, detail, confidence, matched_by, dest, tag_verified, rules))

    def allowed(detail: str | None = None) -> FlowVerdict:
        return _verdict((f, "allowed", rule, None, detail, low, matched_by, dest, tag_verified, rules))

    if f.connect_status is not None and not 200 <= f.connect_status < 300:
        return blocked("proxy-denied", f"the proxy {f.server}:{f.server_port} answered CONNECT {f.connect_target} "
                                       f"with HTTP {f.connect_status}")
    refused = relay_refusal(f.stun)
    if refused is not None:
        return blocked("relay-refused", refused)
    icmp = [e for e in f.icmp_errors if e.toward == "server"]
    if icmp and f.packets_s2c == 0:
        e = icmp[0]
        how = "a firewall rejected it" if is_admin_prohibited(f.ip_version, e.type, e.code) else "it was unreachable"
        return blocked("icmp-unreachable", f"{e.sender} answered ICMP {e.description} "
                                           f"(type {e.type} code {e.code}: {how}), "
                                           f"{len(icmp)} time{'s' if len(icmp) != 1 else ''}")
    if f.transport == "tcp":
        if f.state == "rejected":
            return blocked("rejected", f"every SYN ({f.syn_count}) was answered by a TCP RST" + _rst_origin(f))
        if f.state == "no-answer":
            return _no_answer(f, ctx, blocked, f"{f.syn_count} SYN{'s' if f.syn_count != 1 else ''} got no answer")
        if f.tls_alert and not f.tls_version and f.tls_alert_from == "server":
            return blocked("tls-alert", f"TLS alert {f.tls_alert} right after the ClientHello"
                                        + (f" for {f.sni}" if f.sni else "") + " (SNI filtering)")
        if f.state == "reset" and f.sni and not f.tls_version and not f.tls_alert:
            return blocked("rejected", f"the connection was reset right after the ClientHello for {f.sni} "
                                       "(SNI filtering)")
        if f.cert_issuer and f.sni and not any(m in f.cert_issuer.lower() for m in MICROSOFT_ISSUERS):
            return blocked("tls-intercepted", f"{f.sni} was served a certificate issued by {f.cert_issuer}, "
                                              "not by Microsoft's CAs: a TLS-inspecting proxy")
        if f.state == "one-way":
            return allowed("only one direction is in the capture")
        return allowed()
    # UDP
    if f.packets_s2c == 0 and f.packets_c2s > 0:
        s = f.stun
        what = (f"{s.requests} STUN request{'s' if s.requests != 1 else ''}" if s and s.requests
                else f"{f.packets_c2s} datagram{'s' if f.packets_c2s != 1 else ''}")
        return _no_answer(f, ctx, blocked, f"{what} got no answer")
    if f.packets_c2s == 0:
        return allowed("only the server side is in the capture")
    return allowed()


def relay_refusal(s: StunSummary | None) -> str | None:
    """Why a TURN relay refused the allocation, or ``None``: an Allocate was answered with an error
    other than the steps of a working exchange (:data:`~meshpcap.decode.stun.ALLOCATE_RETRY_CODES`, such as
    the 401 that asks for credentials) and no Allocate succeeded, so no relayed address was granted.
    ChannelData on the flow shows a channel was bound, so an allocation existed (a success beyond the
    messages the naming stage read)."""
    if s is None or "Allocate success" in s.methods or s.channel_data:
        return None
    codes = [int(m.rsplit(" ", 1)[1]) for m in s.methods if m.startswith("Allocate error ") and m[15:].isdigit()]
    final = [c for c in codes if c not in ALLOCATE_RETRY_CODES]
    if not final:
        return None
    code = final[-1]
    after = " after the 401 challenge, with credentials" if 401 in codes else ""
    return (f"the TURN server refused Allocate with error {code} {ERROR_NAMES.get(code, '')}".rstrip()
            + f"{after}; no relayed address was granted")


def _rst_origin(f: Flow) -> str:
    """Where the RST came from, judged by its TTL: a server far away would not be 0-2 hops off."""
    hops = hops_away(f.rst_ttl)
    if hops is None:
        return ""
    if hops <= 2:
        return (f" (its TTL {f.rst_ttl} says it came from {hops} hop{'s' if hops != 1 else ''} away: "
                "forged by a firewall near the capture point, not sent by the server)")
    return f" (TTL {f.rst_ttl}, about {hops} hops away)"


def _no_answer(f: Flow, ctx: Context, blocked, detail: str) -> FlowVerdict:
    if ctx.one_direction:
        return blocked("no-answer", detail + "; the capture shows only one direction of traffic, so the answers "
                                             "may simply not have been captured", "low")
    if ctx.capture_last_ns is not None and ctx.capture_last_ns - f.first_ns < END_GRACE_NS:
        return blocked("no-answer", detail + "; the capture ended too soon after to be sure", "low")
    if ctx.dropped:
        return blocked("no-answer", detail + f"; the capturing host dropped {ctx.dropped} packets, so the answers "
                                             "may have been lost by the capture", "low")
    return blocked("no-answer", detail + " (silent drop)")


def judge_dns(ev: DnsEvent, matcher: RuleMatcher) -> tuple[Rule, str] | None:
    """A failed lookup of a name a rule needs: (rule, reason) or None."""
    failed = ev.rcode is None or ev.rcode in ("NXDOMAIN", "SERVFAIL", "REFUSED") or ev.sinkhole
    if not failed:
        return None
    rules = matcher.by_name(ev.qname)
    if not rules:
        return None
    if ev.sinkhole:
        why = "a sinkhole address (" + ", ".join(ev.answers[:2]) + ")"
    elif ev.rcode is None:
        why = "no answer"
    else:
        why = ev.rcode
    return rules[0], why
