"""Name every flow from the evidence the builder kept: TLS and QUIC ClientHellos, DNS,
HTTP Host and CONNECT, STUN/TURN, and how each handshake ended.

The parsers in ``meshpcap.decode`` are pure; the state lives here: TCP streams are
reassembled in sequence order (retransmissions and out-of-order segments handled,
bounded), QUIC CRYPTO data is gathered over several Initials, and DNS answers are
kept in a time-aware address -> names map so that a flow is only named by lookups
that finished before it began.
"""

from __future__ import annotations

import bisect
import pickle
from collections import Counter, defaultdict
from operator import attrgetter
from typing import Any

import numpy as np

from .. import _child
from ..decode import dns as dnsp
from ..decode import frames as F
from ..decode import http as httpp
from ..decode import quic as quicp
from ..decode import stun as stunp
from ..decode import tls as tlsp
from ..decode.buffer import DecodeError
from .engine import GROUP, TCP_SYN, Evidence, RawFlows, addr_text
from .model import DnsEvent, Flow, StunSummary
from .records import addr_texts, make_dns_event, orient

MAX_STREAM = 64 * 1024  # bytes of each TCP direction reassembled for naming
PARALLEL_MIN_FLOWS = 8000  # fewer flows left to name after EarlyNamer: one process (a fork costs more than it saves)
DNS_PORTS = (53, 5353, 5355)
NAME_PRIORITY = ("sni", "connect", "http", "dns")
MAX_DNS_NAMES = 8  # names kept per flow from DNS
MAX_LOOKUPS_SCANNED = 64  # earlier answers for one address looked at per flow
SPECULATE_MAX_EVIDENCE = 256  # flows with more payloads kept are not named ahead (EarlyNamer.speculate)
SPECULATE_BUDGET = 8  # flows named ahead per call (each call is one slice of time the reader process gives)


def reassemble(segments: list[Evidence], isn: int | None = None, limit: int = MAX_STREAM) -> tuple[bytes, bool]:
    """The contiguous byte stream of one TCP direction from its first byte.

    ``isn`` is the direction's initial sequence number when its SYN was seen (the
    stream then starts at isn + 1, RFC 9293 section 3.4); otherwise the lowest
    sequence number seen starts it.  Retransmitted and overlapping segments are
    merged; the stream stops at the first gap.  Returns (bytes, has_gap).
    """
    segs = [s for s in segments if s.data]
    if not segs:
        return b"", False
    # The usual case first: segments in order, each starting where the previous one ended
    # (no SYN data, retransmission, overlap or gap): the stream is their concatenation.
    pos = segs[0].seq if isn is None else (isn + 1) & 0xFFFFFFFF
    total = 0
    for s in segs:
        if s.seq != pos or s.flags & TCP_SYN:
            break
        pos = (pos + len(s.data)) & 0xFFFFFFFF
        total += len(s.data)
    else:
        if total < 0x80000000:  # within half the sequence space, as the general path assumes
            return b"".join([s.data for s in segs])[:limit], False
    return _reassemble_general(segs, isn, limit)


def tcp_streams(evs: list[Evidence], a_is_client: bool, c_isn: int | None, s_isn: int | None,
                limit: int = MAX_STREAM) -> tuple[bytes, bytes]:
    """``reassemble(...)[0]`` of the client's and of the server's payloads among a TCP flow's ``evs`` (the
    client's are those whose ``from_a`` is ``a_is_client``), from their SYNs' ``c_isn`` and ``s_isn``.  The
    compiled helper (``_group.c`` tcp_streams) joins a direction whose segments are in order, the usual
    case; reassemble takes any other."""
    cs = ss = None
    if GROUP is not None:
        cs, ss = GROUP.tcp_streams(Evidence, evs, a_is_client, -1 if c_isn is None else (c_isn + 1) & 0xFFFFFFFF,
                                   -1 if s_isn is None else (s_isn + 1) & 0xFFFFFFFF, limit)
    if cs is None:
        cs = reassemble([e for e in evs if e.from_a == a_is_client], c_isn, limit)[0]
    if ss is None:
        ss = reassemble([e for e in evs if e.from_a != a_is_client], s_isn, limit)[0]
    return cs, ss


def _reassemble_general(segs: list[Evidence], isn: int | None, limit: int) -> tuple[bytes, bool]:
    """:func:`reassemble` for any order, overlap and gaps (``segs`` all carry data)."""
    # Data on a SYN (TCP Fast Open, RFC 7413) starts after the SYN's own sequence number (RFC 9293 section 3.4).
    starts = [(s.seq + 1) & 0xFFFFFFFF if s.flags & TCP_SYN else s.seq for s in segs]
    if isn is not None:
        base = (isn + 1) & 0xFFFFFFFF
    else:
        s0 = starts[0]
        signed = [((q - s0) & 0xFFFFFFFF) - (0x100000000 if ((q - s0) & 0xFFFFFFFF) >= 0x80000000 else 0)
                  for q in starts]
        base = (s0 + min(signed)) & 0xFFFFFFFF
    rel = []
    for s, q in zip(segs, starts):
        off = (q - base) & 0xFFFFFFFF
        if off >= 0x80000000:  # before the stream start (wrapped): drop what precedes it
            back = 0x100000000 - off
            if back >= len(s.data):
                continue
            rel.append((0, s.data[back:]))
        else:
            rel.append((off, s.data))
    rel.sort(key=lambda x: x[0])
    out = bytearray()
    gap = False
    for off, data in rel:
        if off > len(out):
            gap = True
            break
        tail = data[len(out) - off :]
        if tail:
            out += tail
        if len(out) >= limit:
            break
    return bytes(out[:limit]), gap


def _chain_runs(lst: list[tuple[int, tuple[str, ...]]]) -> tuple[list[int], list[tuple[str, ...]]]:
    """The lookups of one address (time order) as runs of the same answer chain: (first index of each
    run, its chain).  A lookup repeated adds no name the same chain just after it has not added."""
    starts: list[int] = []
    chains: list[tuple[str, ...]] = []
    for k, (_, chain) in enumerate(lst):
        if not chains or chain != chains[-1]:
            starts.append(k)
            chains.append(chain)
    return starts, chains


def _names_before(runs: tuple[list[int], list[tuple[str, ...]]], i: int) -> tuple[str, ...]:
    """:meth:`Namer.names_resolving_to` from the lookups before index ``i``: the newest
    MAX_LOOKUPS_SCANNED of them, newest first, until MAX_DNS_NAMES names are found (each run of
    one chain read once: the lookups after its first add nothing to the names, nor to the count)."""
    starts, chains = runs
    lo = max(i - 1 - MAX_LOOKUPS_SCANNED, -1) + 1  # the oldest lookup scanned
    out: list[str] = []
    r = bisect.bisect_right(starts, i - 1) - 1
    while r >= 0 and (r + 1 == len(starts) or starts[r + 1] > lo):
        for name in chains[r]:
            if name not in out:
                out.append(name)
        if len(out) >= MAX_DNS_NAMES:
            break
        r -= 1
    return tuple(out[:MAX_DNS_NAMES])


def parse_dns_or_error(data: bytes) -> "dnsp.DnsMessage | DecodeError":
    try:
        return dnsp.parse_dns(data)
    except DecodeError as exc:
        return exc


def prefetch_dns(items: list[Evidence], parsed: dict[int, object]) -> None:
    """Parse DNS datagrams ahead of the naming stage into ``parsed`` (record -> parse; the
    builder's ``dns_parsed``); the pipeline calls it while the capture is still being read."""
    for e in items:
        if e.record not in parsed:
            parsed[e.record] = parse_dns_or_error(e.data)


class EarlyNamer:
    """Names TCP flows from their payloads while the capture is still being read.

    A TCP flow's evidence is final once both its SYN and SYN-ACK are known (so the
    streams' starts and the orientation are fixed) and both directions have reached
    the builder's bound on kept segments: its names then cannot change, and working
    them out while the reader's second process reads on shortens what is left after
    the last batch (whenever this process would wait for the reader, it fills that
    wait).  The result is the same as naming the flow at the end."""

    def __init__(self, builder, bound: int) -> None:
        self.builder = builder
        self.bound = bound
        self.done: dict[int, tuple[bool, dict[str, Any]]] = {}
        self.seen = np.zeros(1024, bool)  # flows already looked at
        self.answered = np.zeros(1024, bool)  # flows looked at for _answered_dns
        self.stats: dict[str, Any] = {"invalid_names": 0, "malformed": Counter()}
        # flows named ahead (speculate): flow -> (evidence_state, a_is_client, names, stats of that naming)
        self.guesses: dict[int, tuple[tuple, bool, dict[str, Any], dict[str, Any]]] = {}
        self.dns_guesses: dict[int, tuple] = {}  # DNS flows named ahead: flow -> (evidence_state, its DNS pass part)
        self._queue: list[int] = []  # the flows speculate looks at in its current pass
        self._at = 0
        self._added = False  # a batch was added since the current pass began

    def step(self) -> None:
        self._added = True
        b = self.builder
        nf = b.nflows
        if not nf:
            return
        if nf > len(self.seen):
            self.seen = np.concatenate([self.seen, np.zeros(max(nf, len(self.seen)), bool)])
        ready = np.nonzero((b.f_pay_a.a[:nf] >= self.bound) & (b.f_pay_b.a[:nf] >= self.bound) & ~self.seen[:nf])[0]
        self._answered_dns(nf)
        if not ready.size:
            return
        self.seen[ready] = True
        view = _LiveFlows(b)
        namer = Namer(view, dns_pass=False)  # type: ignore[arg-type]
        namer.stats = self.stats
        for fid in ready.tolist():
            t = b.tcp.get(fid)
            if t is None or t.isn is None or t.synack_isn is None:
                continue
            key = b.slot_keys[int(view.flow_slot[fid])]
            if key[6] in DNS_PORTS or key[7] in DNS_PORTS:
                continue
            a_is_client = t.syn_dir == 1
            self.done[fid] = (a_is_client, namer._from_evidence(fid, a_is_client))
            # Its payloads are needed no more: the flow keeps no more (both directions are past the
            # bound), and at the end it is oriented by the same SYN (records.orientation), so name_flows
            # takes this result.  The key stays (naming_jobs lists the flows that had evidence); the
            # bytes go (about 40 MB of the benchmark's 52 MB of evidence by the end of the read).
            b.evidence[fid] = []

    def _answered_dns(self, nf: int) -> None:
        """Name ahead the DNS flows that have payloads both ways (a query and its answer, as most will stay):
        guesses as :meth:`speculate` makes them, checked at the end the same way, made now rather than only
        in time this process would wait (the DNS pass would otherwise make them after the last batch)."""
        b = self.builder
        if nf > len(self.answered):
            self.answered = np.concatenate([self.answered, np.zeros(max(nf, len(self.answered)), bool)])
        cand = np.flatnonzero((b.f_pay_a.a[:nf] > 0) & (b.f_pay_b.a[:nf] > 0) & ~self.answered[:nf])
        if not cand.size:
            return
        self.answered[cand] = True
        dns = _dns_port(b.slot_keys, b.f_slot.a[cand])
        if dns.any():
            namer = Namer(_LiveFlows(b), dns_pass=False)  # type: ignore[arg-type]
            for fid in cand[dns].tolist():
                self._guess(namer, fid)

    def speculate(self) -> bool:
        """Name a few flows whose evidence may still grow, in time this process would otherwise wait for
        the reader (the capture reader calls it then: see ``Capture.batches_with``); False once every
        flow's guess is as current as the evidence (until the next batch).  A guess keeps the state of
        the evidence it was made from (:func:`evidence_state`); at the end name_flows takes it only where
        that state is still the same, so the result is the same as naming the flow at the end."""
        b = self.builder
        if self._at >= len(self._queue):
            if not self._added:
                return False
            self._queue, self._at, self._added = list(b.evidence), 0, False
        namer = Namer(_LiveFlows(b), dns_pass=False)  # type: ignore[arg-type]
        named = 0
        while self._at < len(self._queue) and named < SPECULATE_BUDGET:
            fid = self._queue[self._at]
            self._at += 1
            named += self._guess(namer, fid)
        return True

    def _guess(self, namer: "Namer", fid: int) -> bool:
        """Name one flow ahead from the evidence it has now, unless it is named already, has no evidence or
        too much, or its guess is as current as its evidence; True when a guess was made."""
        b = self.builder
        if fid in self.done or not 0 < len(b.evidence[fid]) <= SPECULATE_MAX_EVIDENCE:
            return False
        state = evidence_state(b, fid)
        old = self.guesses.get(fid)
        if old is not None and old[0] == state:
            return False
        t = b.tcp.get(fid)
        key = b.slot_keys[int(b.f_slot.a[fid])]
        a_is_client = orient(key, t, bool(b.f_first_a.a[fid]))[0]
        namer.stats = {"invalid_names": 0, "malformed": Counter()}
        self.guesses[fid] = (state, a_is_client, namer._from_evidence(fid, a_is_client), namer.stats)
        if key[6] in DNS_PORTS or key[7] in DNS_PORTS:  # its part of the DNS pass too
            self.dns_guesses[fid] = (state, namer._dns_of_flow(fid, b.evidence[fid], key))
        return True


def _dns_port(slot_keys, slots: np.ndarray) -> np.ndarray:
    """Which of these slots' 5-tuples have a DNS port (DNS_PORTS) on either side, from the key columns."""
    cols = slot_keys.columns
    ports = np.array(DNS_PORTS)
    return np.isin(cols[6].a[slots], ports) | np.isin(cols[7].a[slots], ports)


def _dns_flows(raw: RawFlows) -> list[int]:
    """The flows with evidence whose 5-tuple has a DNS port, in the evidence's order: the columns asked once
    instead of each flow's key tuple."""
    fids = np.fromiter(raw.evidence, np.int64, len(raw.evidence))
    if not fids.size:
        return []
    return fids[_dns_port(raw.slot_keys, raw.flow_slot[fids])].tolist()


def evidence_state(flows, fid: int) -> tuple:
    """What a flow's names depend on that can change while the capture is read: how many payloads it
    kept (the lists only grow) and its handshake's sequence numbers and directions.  ``flows``: a
    FlowBuilder or the RawFlows it finished."""
    t = flows.tcp.get(fid)
    n = len(flows.evidence.get(fid, ()))
    return (n,) if t is None else (n, t.isn, t.syn_dir, t.synack_isn, t.synack_dir)


class _LiveFlows:
    """The parts of RawFlows that Namer._from_evidence reads, taken from a builder at work."""

    __slots__ = ("slot_keys", "flow_slot", "evidence", "tcp", "dns_parsed")

    def __init__(self, b) -> None:
        self.slot_keys = b.slot_keys
        self.flow_slot = b.f_slot.a
        self.evidence = b.evidence
        self.tcp = b.tcp
        self.dns_parsed = b.dns_parsed


class Namer:
    """Derives names and handshake outcomes for the flows of one :class:`RawFlows`."""

    def __init__(self, raw: RawFlows, dns_pass: bool = True) -> None:
        self.raw = raw
        self.stats: dict[str, Any] = {"invalid_names": 0, "malformed": Counter()}
        self._resolved: dict[str, list[tuple[int, tuple[str, ...]]]] = defaultdict(list)  # address -> [(ns, question name)]
        self._resolved_ns: dict[str, list[int]] = {}
        self._names_memo: dict[str, tuple[list, dict[int, tuple[str, ...]]]] = {}  # see names_resolving_to
        self.dns_events: list[DnsEvent] = []
        self._dns_event_fid: list[int] = []
        self.dns_ahead: dict[int, tuple] | None = None  # flow -> (evidence_state, _dns_of_flow), made ahead
        if dns_pass:  # False only for name_flows(), which runs it itself
            self._dns_pass()

    # ------------------------------------------------------------------ DNS
    def _dns_pass(self) -> None:
        raw = self.raw
        ahead = self.dns_ahead
        for fid in _dns_flows(raw):
            guess = ahead.get(fid) if ahead else None
            if guess is not None and guess[0] == evidence_state(raw, fid):
                events, resolved, invalid, malformed = guess[1]
            else:
                key = raw.slot_keys[int(raw.flow_slot[fid])]
                events, resolved, invalid, malformed = self._dns_of_flow(fid, raw.evidence[fid], key)
            self.stats["invalid_names"] += invalid
            if malformed:
                self.stats["malformed"]["dns"] += malformed
            self.dns_events += events
            self._dns_event_fid += [fid] * len(events)
            for address, item in resolved:
                self._resolved[address].append(item)
        for address, lst in self._resolved.items():
            lst.sort(key=lambda x: x[0])
            self._resolved_ns[address] = [x[0] for x in lst]
        order = sorted(range(len(self.dns_events)), key=lambda i: (self.dns_events[i].ns, self.dns_events[i].qname))
        self.dns_events = [self.dns_events[i] for i in order]
        self._dns_event_fid = [self._dns_event_fid[i] for i in order]

    def _dns_of_flow(self, fid: int, evs: list[Evidence], key: tuple) -> tuple[list, list, int, int]:
        """One DNS flow's part of the DNS pass: its events in the order met, its answers as (address,
        (ns, chain)) pairs, and the invalid names and malformed messages it counted.  A pure function
        of the flow's evidence and handshake (so it can be worked out ahead: EarlyNamer.speculate)."""
        raw = self.raw
        proto, ver, ah, al, bh, bl, pa, pb = key
        events: list[DnsEvent] = []
        resolved: list[tuple[str, tuple[int, tuple[str, ...]]]] = []
        invalid = malformed = 0
        a, b = addr_text(ver, ah, al), addr_text(ver, bh, bl)
        messages: list[tuple[int, bool, bytes]] = []
        if proto == F.PROTO_UDP:
            early = raw.dns_parsed
            messages = [(e.ns, e.from_a, early.get(e.record, e.data)) for e in evs]
        elif proto == F.PROTO_TCP:
            t = raw.tcp.get(fid)
            for from_a in (True, False):
                segs = [e for e in evs if e.from_a == from_a]
                isn = None
                if t is not None and t.isn is not None and (t.syn_dir == 1) == from_a:
                    isn = t.isn
                elif t is not None and t.synack_isn is not None and (t.synack_dir == 1) == from_a:
                    isn = t.synack_isn
                stream, _ = reassemble(segs, isn)
                try:
                    msgs, _ = dnsp.split_dns_tcp(stream)
                except DecodeError:
                    continue
                ns0 = min(e.ns for e in segs) if segs else 0
                messages += [(ns0, from_a, m) for m in msgs]
            # both directions in time order, queries before answers at the same time (the QR bit,
            # RFC 1035 section 4.1.1): answers must meet their pending query
            messages.sort(key=lambda m: (m[0], m[2][2] >> 7))
        transport = "udp" if proto == F.PROTO_UDP else "tcp"
        pending: dict[tuple, tuple[int, str, str, str, str]] = {}
        sinkholes = dnsp.SINKHOLE_ADDRESSES
        for ns, from_a, data in messages:
            if isinstance(data, (bytes, bytearray, memoryview)):
                data = parse_dns_or_error(data)
            if isinstance(data, DecodeError):
                malformed += 1
                continue
            msg = data
            invalid += msg.invalid_names
            if msg.opcode != 0 or not msg.questions or msg.questions[0].name is None:
                continue
            q = msg.questions[0]
            client, server = (a, b) if from_a != msg.is_response else (b, a)
            k = (msg.id, q.name, q.qtype)
            qtype = dnsp.TYPE_NAMES.get(q.qtype) or str(q.qtype)  # the names are never empty
            if not msg.is_response:
                if k not in pending:
                    pending[k] = (ns, client, server, q.name, qtype)
                continue
            qns = pending.pop(k, (ns,))[0]
            rcode = dnsp.RCODE_NAMES.get(msg.rcode) or str(msg.rcode)
            answers = tuple([r.value for r in msg.answers if r.value is not None])
            addrs = dnsp.answers_by_address(msg)
            sinkhole = bool(addrs) and sinkholes.issuperset(addrs)
            # DnsEvent(...) without its __init__ (records' record maker: 2,500 exchanges at 1M packets)
            events.append(make_dns_event((qns, client, server, transport, q.name, qtype, rcode, answers, sinkhole, None)))
            if msg.rcode == 0 and not sinkhole:
                for address, chain in addrs.items():
                    if address in sinkholes:
                        continue
                    # the question name first, then the CNAME chain behind it
                    resolved.append((address, (ns, chain)))
        for ns, client, server, qname, qtype in pending.values():
            events.append(make_dns_event((ns, client, server, transport, qname, qtype, None, (), False, None)))
        return events, resolved, invalid, malformed

    def names_resolving_to(self, address: str, before_ns: int) -> tuple[str, ...]:
        """Names whose answers pointed at ``address`` at or before ``before_ns``, newest lookup
        first; within one answer the name asked for comes before the CNAME targets behind it."""
        lst = self._resolved.get(address)
        if not lst:
            return ()
        i = bisect.bisect_right(self._resolved_ns[address], before_ns)
        # the answer is the same for every flow to this address begun after the same lookups (many flows)
        memo = self._names_memo.get(address)
        if memo is None or memo[0] is not lst:
            memo = self._names_memo[address] = (lst, {}, _chain_runs(lst))
        got = memo[1].get(i)
        if got is None:
            got = memo[1][i] = _names_before(memo[2], i)
        return got

    def link_dns_events(self, flows: list[Flow]) -> list[DnsEvent]:
        """Give each DNS event the id of the flow that carried it."""
        from .records import with_flow_ids

        return with_flow_ids(self.dns_events, self._dns_event_fid, self.raw)

    # ------------------------------------------------------------------ per flow
    def names_for(self, fid: int, a_is_client: bool) -> dict[str, Any]:
        return self._dns_and_choice(fid, a_is_client, self._from_evidence(fid, a_is_client))

    def _from_evidence(self, fid: int, a_is_client: bool) -> dict[str, Any]:
        """The names and outcomes the flow's own payloads give (no DNS needed)."""
        raw = self.raw
        key = raw.slot_keys[int(raw.flow_slot[fid])]
        proto = key[0]
        out: dict[str, Any] = {}
        evs = raw.evidence.get(fid, [])
        if proto == F.PROTO_TCP:
            t = raw.tcp.get(fid)
            c_isn = s_isn = None
            if t is not None and t.isn is not None:
                if (t.syn_dir == 1) == a_is_client:
                    c_isn = t.isn
            if t is not None and t.synack_isn is not None and (t.synack_dir == 1) != a_is_client:
                s_isn = t.synack_isn
            self._tcp(out, *tcp_streams(evs, a_is_client, c_isn, s_isn))
        elif proto == F.PROTO_UDP:
            self._udp(out, [e for e in evs if e.from_a == a_is_client], [e for e in evs if e.from_a != a_is_client])
        return out

    def _dns_and_choice(self, fid: int, a_is_client: bool, out: dict[str, Any]) -> dict[str, Any]:
        """Add the DNS names of the flow's server and pick the flow's name."""
        raw = self.raw
        _, ver, ah, al, bh, bl, _, _ = raw.slot_keys[int(raw.flow_slot[fid])]
        server = addr_text(ver, bh, bl) if a_is_client else addr_text(ver, ah, al)
        return self._choice(out, server, int(raw.first_ns[fid]))

    def dns_and_choices(self, fids: list[int], a_is_client: list[bool], outs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`_dns_and_choice` of each flow, the servers' addresses and the flows' starts taken from the
        columns at once (about 2 us a flow less: 5,000 flows named by the end of a large read)."""
        if not fids:
            return []
        raw = self.raw
        fid = np.asarray(fids, np.int64)
        slot = raw.flow_slot[fid]
        _, ver, ah, al, bh, bl = (c.a[slot] for c in raw.slot_keys.columns[:6])
        client_a = np.asarray(a_is_client, bool)
        servers = addr_texts(ver, np.where(client_a, bh, ah), np.where(client_a, bl, al))
        return list(map(self._choice, outs, servers, raw.first_ns[fid].tolist()))

    def _choice(self, out: dict[str, Any], server: str, first_ns: int) -> dict[str, Any]:
        """Add the DNS names of ``server`` before ``first_ns`` (the flow's start) and pick the flow's name."""
        dns_names = self.names_resolving_to(server, first_ns)
        out["dns_names"] = dns_names or None
        for source in NAME_PRIORITY:
            if source == "sni" and out.get("sni"):
                out["name"], out["name_source"] = out["sni"], "sni"
                break
            if source == "connect" and out.get("connect_target"):
                host = out["connect_target"].rsplit(":", 1)[0].strip("[]")
                out["name"], out["name_source"] = host, "connect"
                break
            if source == "http" and out.get("http_host"):
                out["name"], out["name_source"] = out["http_host"], "http"
                break
            if source == "dns" and dns_names:
                out["name"], out["name_source"] = dns_names[0], "dns"
                break
        return out

    def _tcp(self, out: dict[str, Any], cs: bytes, ss: bytes) -> None:
        if not cs and not ss:
            return
        if cs and httpp.looks_like_http_request(cs[:8]):
            try:
                conv = httpp.read_conversation(cs, ss)
            except DecodeError:
                conv = None
                self.stats["malformed"]["http"] += 1
            if conv is not None and conv.exchanges:
                self._http(out, conv, cs, ss)
                return
        if cs and cs[0] < 4 and len(cs) >= 8 and cs[4:8] == stunp._COOKIE_BYTES:
            self._stun_tcp(out, cs, ss)
            return
        self._tls(out, cs, ss)

    def _http(self, out: dict[str, Any], conv, cs: bytes, ss: bytes) -> None:
        """Host, or CONNECT target and outcome: every request/response on the connection is read, so a
        CONNECT answered 407, re-sent with credentials and answered 200 is judged by the 200 (RFC 9110
        section 11.7.1), and the TLS inside the tunnel is read."""
        req = conv.exchanges[0].request
        if req.method != "CONNECT":
            if req.host:
                out["http_host"] = req.host
            elif req.host is None and _has_host_header(cs):
                self.stats["invalid_names"] += 1
            return
        connects = [ex for ex in conv.exchanges if ex.request.method == "CONNECT"]
        target = connects[-1].request  # the one the final outcome belongs to (the same in a 407 retry)
        if target.connect_host:
            port = target.connect_port if target.connect_port is not None else 443
            host = f"[{target.connect_host}]" if ":" in target.connect_host else target.connect_host
            out["connect_target"] = f"{host}:{port}"
        else:
            self.stats["invalid_names"] += 1
        final = next((ex.response for ex in reversed(connects) if ex.response is not None), None)
        if final is not None:
            out["connect_status"] = final.status
        if conv.tunnel_client is not None:  # tunnel open: TLS follows inside it
            self._tls(out, cs[conv.tunnel_client :], ss[conv.tunnel_server :])

    def _tls(self, out: dict[str, Any], cs: bytes, ss: bytes) -> None:
        hello = None
        if cs and (tlsp.looks_like_tls(cs[:5]) or tlsp.looks_like_sslv2_hello(cs[:5])):
            try:
                hello = tlsp.read_client_hello(cs)
            except DecodeError:
                self.stats["malformed"]["tls"] += 1
        if hello is not None:
            if hello.sni_raw_invalid:
                self.stats["invalid_names"] += 1
            out["sni"] = hello.sni
            out["alpn"] = hello.alpn or None
            out["ech"] = hello.ech
            if hello.sni_literal is not None:
                out["sni_literal"] = hello.sni_literal
        if ss and tlsp.looks_like_tls(ss[:5]) or (ss and ss[0] == tlsp.CT_ALERT):
            try:
                flight = tlsp.read_server_flight(ss)
            except DecodeError:
                flight = None
            if flight is not None:
                if flight.version is not None:
                    out["tls_version"] = tlsp.TLS_VERSION_NAMES.get(flight.version, hex(flight.version))
                if flight.alert is not None:
                    out["tls_alert"] = flight.alert.name
                    out["tls_alert_from"] = "server"
                out["cert_subject"] = flight.cert_subject
                out["cert_issuer"] = flight.cert_issuer
        if "tls_alert" not in out and hello is not None and cs:
            try:
                alert = tlsp.read_alerts(cs)
            except DecodeError:
                alert = None
            if alert is not None:
                out["tls_alert"] = alert.name
                out["tls_alert_from"] = "client"

    def _udp(self, out: dict[str, Any], client_ev: list[Evidence], server_ev: list[Evidence]) -> None:
        first = client_ev[0].data if client_ev else b""
        if first and _looks_like_quic(first):
            try:
                res = quicp.client_hello_from_initials([e.data for e in client_ev if quicp.is_long_header(e.data)])
            except DecodeError:
                res = None
                self.stats["malformed"]["quic"] += 1
            if res is not None:
                version, hello = res
                out["quic_version"] = quicp.version_name(version)
                if hello.sni_raw_invalid:
                    self.stats["invalid_names"] += 1
                out["sni"] = hello.sni
                out["alpn"] = hello.alpn or None
                out["ech"] = hello.ech
                if hello.sni_literal is not None:
                    out["sni_literal"] = hello.sni_literal
                out["tls_version"] = "TLS 1.3"
            elif first[0] & 0x40:
                out["quic_version"] = quicp.version_name(_quic_version(first))
        # the STUN-looking datagrams (RFC 7983: first byte 0-3) in capture order: "methods" reads in time
        maybe = [e for e in client_ev + server_ev if len(e.data) >= 20 and e.data[0] < 4]
        msgs = []
        for e in sorted(maybe, key=_record):
            try:
                msgs.append(stunp.parse_stun(e.data))
            except DecodeError:
                continue
        if msgs:
            out["stun"] = _stun_summary(msgs)

    def _stun_tcp(self, out: dict[str, Any], cs: bytes, ss: bytes) -> None:
        msgs = []
        channel_data = 0  # the builder counts ChannelData on UDP only; over TCP count the frames reassembled here
        for stream in (cs, ss):
            try:
                frames, _ = stunp.split_stun_tcp(stream)
            except DecodeError:
                continue
            for fr in frames:
                if fr and fr[0] < 4:
                    try:
                        msgs.append(stunp.parse_stun(fr))
                    except DecodeError:
                        pass
                elif fr and fr[0] <= 0x4F:  # ChannelData on channels 0x4000-0x4FFF (RFC 8656 sections 12.4, 12.5)
                    channel_data += 1
        if msgs:
            out["stun"] = _stun_summary(msgs, channel_data)


def name_flows(raw: RawFlows, jobs: list[tuple[int, bool]],
               early: EarlyNamer | None = None) -> tuple[Namer, list[dict[str, Any]]]:
    """:func:`name_flows_now` for the flows ``early`` has not named yet; the early ones only
    get their DNS names and their choice of name here."""
    if early is None or not (early.done or early.guesses):
        return name_flows_now(raw, jobs)
    done = early.done
    ahead: dict[int, dict[str, Any]] = {}  # flows whose guess still holds: its names (see EarlyNamer.speculate)
    todo = []
    for f, a in jobs:
        if f in done and done[f][0] == a:
            continue
        guess = early.guesses.get(f)
        if guess is not None and guess[1] == a and guess[0] == evidence_state(raw, f):
            ahead[f] = guess[2]
        else:
            todo.append((f, a))
    n, names = name_flows_now(raw, todo, early.dns_guesses)
    _stats_merge(n.stats, early.stats)
    guesses = early.guesses
    for f in ahead:
        counted = guesses[f][3]
        if counted["invalid_names"] or counted["malformed"]:  # most guesses counted nothing
            _stats_merge(n.stats, counted)
    by_fid = dict(zip((f for f, _ in todo), names))
    out = [by_fid.get(f) for f, _ in jobs]
    named_before = [j for j, got in enumerate(out) if got is None]  # named early: their DNS names and choice now
    fids = [jobs[j][0] for j in named_before]
    chosen = n.dns_and_choices(fids, [jobs[j][1] for j in named_before],
                               [dict(ahead[f] if f in ahead else done[f][1]) for f in fids])
    for j, got in zip(named_before, chosen):
        out[j] = got
    return n, out


def name_flows_now(raw: RawFlows, jobs: list[tuple[int, bool]],
                   dns_ahead: dict[int, tuple] | None = None) -> tuple[Namer, list[dict[str, Any]]]:
    """A :class:`Namer` for ``raw`` and its :meth:`Namer.names_for` of each (flow, a_is_client)
    job, in order.

    With many flows and a spare core, a forked child runs the DNS pass and names the last
    jobs while this process names the first ones from their payloads, then adds their DNS
    names from the child's DNS pass.  The names, DNS events and stats (counter keys in
    first-seen order) come out exactly as a serial pass makes them."""
    n = Namer(raw, dns_pass=False)
    n.dns_ahead = dns_ahead  # DNS flows whose part of the pass was made ahead (EarlyNamer.speculate)
    if len(jobs) < PARALLEL_MIN_FLOWS or not _child.can_fork() or not all(
            type(v) is int or isinstance(v, Counter) for v in n.stats.values()):
        n._dns_pass()
        return n, [n.names_for(f, a) for f, a in jobs]
    split = _split_point(raw, jobs)

    def child(wfd: int) -> None:  # the DNS pass and the last jobs, reported through the pipe
        before = _stats_copy(n.stats)
        n._dns_pass()
        dns = (n._resolved, n._resolved_ns, n.dns_events, n._dns_event_fid, _stats_delta(before, n.stats))
        before = _stats_copy(n.stats)
        theirs = [n.names_for(f, a) for f, a in jobs[split:]]
        _child.write_all(wfd, pickle.dumps((dns, theirs, _stats_delta(before, n.stats)), protocol=pickle.HIGHEST_PROTOCOL))

    with _child.beside(child) as pipe:
        initial = _stats_copy(n.stats)
        mine = [n._from_evidence(f, a) for f, a in jobs[:split]]
        mine_delta = _stats_delta(initial, n.stats)
        payload = pipe.read() if pipe is not None else b""  # None: no child could be started
    try:
        dns, theirs, theirs_delta = pickle.loads(payload)
    except Exception:  # the child failed: do its part here
        dns = theirs = theirs_delta = None
    # the stats in serial order: DNS pass, the first jobs, the last jobs
    n.stats = initial
    if dns is None:
        n._dns_pass()
    else:
        n._resolved, n._resolved_ns, n.dns_events, n._dns_event_fid, dns_delta = dns
        _stats_add(n.stats, dns_delta)
    _stats_add(n.stats, mine_delta)
    mine = [n._dns_and_choice(f, a, out) for (f, a), out in zip(jobs[:split], mine)]
    if theirs is None or len(theirs) != len(jobs) - split:
        return n, mine + [n.names_for(f, a) for f, a in jobs[split:]]
    _stats_add(n.stats, theirs_delta)
    return n, mine + theirs


def _split_point(raw: RawFlows, jobs: list[tuple[int, bool]]) -> int:
    """Where the child's jobs start: the child also runs the DNS pass, so it takes fewer jobs.

    Measured on the benchmark capture, naming costs about the same per flow whatever its
    kind, and parsing a DNS message about 0.6 of that; a poor guess only costs time."""
    dns = 0
    for fid, evs in raw.evidence.items():
        key = raw.slot_keys[int(raw.flow_slot[fid])]
        if key[6] in DNS_PORTS or key[7] in DNS_PORTS:
            dns += sum(1 for e in evs if e.record not in raw.dns_parsed)  # those prefetch_dns parsed cost little now
    # parent: split jobs; child: 0.6 * dns + (len(jobs) - split) jobs
    return min(max(int((len(jobs) + 0.6 * dns) / 2), 1), len(jobs) - 1)


def _stats_add(stats: dict[str, Any], delta: list) -> None:
    for key, d in delta:
        if type(d) is int:
            stats[key] += d
        else:
            for k, v in d:
                stats[key][k] += v


def _stats_merge(stats: dict[str, Any], counted: dict[str, Any]) -> None:
    """Add to ``stats`` what a naming that began at zero counted (``counted``): what _stats_add of its
    _stats_delta from nothing adds, counters in first-seen order, without making either (2,500 guesses at 1M)."""
    for key, v in counted.items():
        if type(v) is int:
            stats[key] += v
        else:
            for k, n in v.items():
                if n:
                    stats[key][k] += n


def _stats_copy(stats: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if type(v) is int else Counter(v)) for k, v in stats.items()}


def _stats_delta(before: dict[str, Any], after: dict[str, Any]) -> list:
    """What naming added to the stats, counters in first-seen order."""
    out: list = []
    for key, v in after.items():
        if type(v) is int:
            out.append((key, v - before.get(key, 0)))
        else:
            old = before.get(key) or {}
            out.append((key, [(k, n - old.get(k, 0)) for k, n in v.items() if n != old.get(k, 0)]))
    return out


_record = attrgetter("record")


def _quic_version(datagram: bytes) -> int:
    return int.from_bytes(datagram[1:5], "big")


def _looks_like_quic(datagram: bytes) -> bool:
    """A QUIC long-header packet of a version we know (RFC 9000 section 17.2; RFC 8999 invariants).

    Besides the versions we decrypt: reserved versions that force Version Negotiation (RFC 9000
    section 15) and the IETF drafts 0xff0000xx, so that their flows still report a quic_version.
    """
    if len(datagram) < 7 or not quicp.is_long_header(datagram):
        return False
    v = _quic_version(datagram)
    return v in quicp.SUPPORTED_VERSIONS or quicp.is_reserved_version(v) or (v >> 8) == 0xFF0000


def _has_host_header(stream: bytes) -> bool:
    head = stream.split(b"\r\n\r\n", 1)[0].lower()
    return b"\nhost:" in head


def _stun_summary(msgs, channel_data: int = 0) -> StunSummary:
    counts = Counter(m.class_name for m in msgs)
    methods: list[str] = []
    errors: list[int] = []
    mapped: list[str] = []
    relayed: list[str] = []
    realm = None
    ms = False
    for m in msgs:
        label = f"{m.method_name} {m.class_name}"
        if m.error_code is not None:
            label += f" {m.error_code}"
            if m.error_code not in errors:
                errors.append(m.error_code)
        if label not in methods:
            methods.append(label)
        for addr, lst in ((m.xor_mapped or m.mapped, mapped), (m.relayed, relayed)):
            if addr is not None:
                text = f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
                if text not in lst:
                    lst.append(text)
        realm = realm or m.realm
        ms = ms or m.ms_version is not None or not m.magic_cookie
    return StunSummary(
        requests=counts.get("request", 0),
        indications=counts.get("indication", 0),
        successes=counts.get("success", 0),
        errors=counts.get("error", 0),
        channel_data=channel_data,
        methods=tuple(methods),
        error_codes=tuple(errors),
        mapped=tuple(mapped),
        relayed=tuple(relayed),
        realm=realm,
        ms_turn=ms,
    )
