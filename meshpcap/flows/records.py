"""Turn the builder's arrays into oriented :class:`Flow` records with a state."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields as dataclass_fields
from itertools import repeat
import operator
from operator import attrgetter
from typing import Any, Callable, NamedTuple

import numpy as np

from meshpcap._dataclass import dataclass
from ..decode import frames as F
from .engine import GROUP, RawFlows, TcpFacts, addr_text
from .model import DNS_COLUMNS, FLOW_COLUMNS, DnsEvent, Flow, StunSummary, record_maker, twin_class

# Ports that name a service even above 1024 (so their side is the server).
SERVICE_PORTS = frozenset(
    [3478, 3479, 3480, 3481, 5349, 5350, 1080, 3128, 8080, 8443, 8000, 8888, 5060, 5061, 4500, 1194, 1701, 1723,
     5353, 5355, 3389, 19302, 3306, 5432, 6379, 9000]
)
MESH_RANGE = range(30000, 30500)
DYNAMIC_START = 49152  # IANA dynamic/private ports (RFC 6335 section 6)

_TRANSPORTS = {F.PROTO_TCP: "tcp", F.PROTO_UDP: "udp", F.PROTO_ICMP: "icmp", F.PROTO_ICMPV6: "icmpv6", 132: "sctp",
               F.PROTO_GRE: "gre", 50: "esp"}


def _is_service(port: int) -> bool:
    return port < 1024 or port in SERVICE_PORTS or port in MESH_RANGE


def orient(key: tuple, tcp: TcpFacts | None, first_from_a: bool) -> tuple[bool, str]:
    """Return (a_is_client, how): the SYN sender, else the SYN-ACK receiver, else the
    side with the ephemeral port, else the first talker."""
    if tcp is not None:
        if tcp.syn_dir is not None:
            return tcp.syn_dir == 1, "syn"
        if tcp.synack_dir is not None:
            return tcp.synack_dir == 0, "syn-ack"
    pa, pb = key[6], key[7]
    if key[0] in (F.PROTO_TCP, F.PROTO_UDP) and pa != pb:
        sa, sb = _is_service(pa), _is_service(pb)
        if sa != sb:
            return sb, "ports"
        if pa < 1024 or pb < 1024:
            return pa > pb, "ports"
        da, db = pa >= DYNAMIC_START, pb >= DYNAMIC_START
        if da != db:
            return da, "ports"
    return bool(first_from_a), "first-packet"


def tcp_state(t: TcpFacts, a_is_client: bool, c2s: int, s2c: int) -> str:
    """The TCP outcome names of the flow JSON (see the README)."""
    client_dir = 1 if a_is_client else 0
    syn = t.syn_dir is not None
    synack = t.synack_dir is not None
    rst_from_server = t.rst_dir is not None and t.rst_dir != client_dir
    if syn and not synack:
        if rst_from_server:
            return "rejected"
        if s2c == 0:
            return "no-answer"
    fin_both = t.fin_a and t.fin_b
    if t.rst_count and not fin_both:
        return "reset"
    if t.fin_a or t.fin_b:
        return "closed"
    if syn or synack:
        return "established"
    if c2s and s2c:
        return "midstream"
    return "one-way"


def record_order(raw: RawFlows) -> list[int]:
    """The builder's flow numbers in record order: by first packet (ties cannot happen: one
    packet starts one flow); record ids count from 1 in this order."""
    return _record_order(raw).tolist()


def _record_order(raw: RawFlows) -> np.ndarray:
    return np.argsort(raw.first_rec, kind="stable")


_HOW = ("syn", "syn-ack", "ports", "first-packet")
ORIENTATIONS = _HOW  # Flow.orientation by the index FlowRecords.judging_columns gives
_UDP_STATE = ("one-way", "bidirectional")  # by "packets both ways"


def orientation(raw: RawFlows) -> tuple[np.ndarray, np.ndarray]:
    """:func:`orient` of every flow at once: (a_is_client, index into ``_HOW``), by builder flow number."""
    cols = raw.slot_keys.columns
    slot = raw.flow_slot
    proto = cols[0].a[slot]
    pa = cols[6].a[slot].astype(np.int64)
    pb = cols[7].a[slot].astype(np.int64)
    a_client = raw.first_from_a.astype(bool)
    how = np.full(slot.size, 3, np.int8)
    ported = ((proto == F.PROTO_TCP) | (proto == F.PROTO_UDP)) & (pa != pb)
    if ported.any():
        service = np.array(sorted(SERVICE_PORTS))

        def is_service(p):
            # kind='table' (ports are small): the sorting kind calls np.unique, which imports numpy.ma (6 ms)
            return (p < 1024) | np.isin(p, service, kind="table") | ((p >= MESH_RANGE.start) & (p < MESH_RANGE.stop))

        sa, sb = is_service(pa), is_service(pb)
        da, db = pa >= DYNAMIC_START, pb >= DYNAMIC_START
        by_service = ported & (sa != sb)
        by_low = ported & ~by_service & ((pa < 1024) | (pb < 1024))
        by_dynamic = ported & ~by_service & ~by_low & (da != db)
        a_client = np.where(by_service, sb, np.where(by_low, pa > pb, np.where(by_dynamic, da, a_client)))
        how[by_service | by_low | by_dynamic] = 2
    for fid, t in raw.tcp.items():  # the handshake decides before the ports
        if t.syn_dir is not None:
            a_client[fid], how[fid] = t.syn_dir == 1, 0
        elif t.synack_dir is not None:
            a_client[fid], how[fid] = t.synack_dir == 0, 1
    return a_client, how


def flow_order(raw: RawFlows) -> list[tuple[int, bool]]:
    """(flow, a_is_client) in record order: the calls :func:`build_records` makes to ``names``."""
    a_client = orientation(raw)[0]
    order = _record_order(raw)
    return list(zip(order.tolist(), a_client[order].tolist()))


def naming_jobs(raw: RawFlows) -> list[tuple[int, bool]]:
    """(flow, a_is_client) in record order for the flows that have payloads kept as evidence: the
    only ones whose names need their payloads (the others get their DNS names when their record
    is made, see ``pipeline``)."""
    a_client = orientation(raw)[0]
    order = _record_order(raw)
    has = np.zeros(order.size, bool)
    has[np.fromiter(raw.evidence.keys(), np.int64, len(raw.evidence))] = True
    sel = order[has[order]]
    return list(zip(sel.tolist(), a_client[sel].tolist()))


def with_flow_ids(events: list, event_flows: list[int], raw: RawFlows) -> list:
    """The DNS events with the record id of the flow (builder number in ``event_flows``) that carried each."""
    if not events:
        return []
    record_id = np.empty(len(raw.first_rec), np.int64)
    record_id[_record_order(raw)] = np.arange(1, len(raw.first_rec) + 1)
    ids = record_id[np.asarray(event_flows, np.int64)].tolist()
    # each event's fields but its flow id, then the id (its last field): a new record, made by its record maker
    return list(map(make_dns_event, map(operator.add, map(_dns_fields, events), zip(ids))))


def build_records(raw: RawFlows, names: Callable[[int, bool], dict[str, Any]] | None = None) -> "FlowRecords":
    """Oriented flow records sorted by their first packet; ids count from 1 in that order.

    The records are made when read (:class:`FlowRecords`), not kept: a capture of millions of
    flows is written out in chunks without ever holding a :class:`Flow` per flow."""
    return FlowRecords(raw, names)


_NAME_FIELDS = tuple(f for f in FLOW_COLUMNS if f not in (
    "id", "transport", "ip_version", "client", "client_port", "server", "server_port", "state", "syn_count",
    "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "first_ns", "last_ns", "icmp_errors", "rst_from",
    "rst_ttl", "orientation", "encapsulated", "ip_fragments", "interfaces"))
# FlowRecords._make passes the fields by position: the flow's own, the naming stage's, interfaces
assert FLOW_COLUMNS[21:-1] == _NAME_FIELDS and FLOW_COLUMNS[-1] == "interfaces"
_NO_NAMES = (None,) * len(_NAME_FIELDS)
CHUNK = 8192  # flows made at a time when streaming
_MAKERS: dict[type, tuple] = {}  # a class -> (its member descriptors in field order, twin class, record maker)


def _makers(cls) -> tuple:
    got = _MAKERS.get(cls)
    if got is None:
        names = tuple(f.name for f in dataclass_fields(cls))
        got = _MAKERS[cls] = (tuple(cls.__dict__[n] for n in names), twin_class(cls), record_maker(cls))
    return got


def _records_from_columns_py(cls, columns: list[list]) -> list:
    """The instances of ``cls`` (a frozen slotted dataclass, see record_maker) whose fields, in order, are the
    lists ``columns`` (one value per instance in each): the pure-Python twin of ``_group.c``'s fill_records."""
    _, twin, make = _makers(cls)
    if twin is None:  # pragma: no cover - see twin_class
        return list(map(make, zip(*columns)))
    made = list(map(twin, *columns))
    for r in made:
        r.__class__ = cls
    return made


def records_from_columns(cls, columns: list[list]) -> list:
    """:func:`_records_from_columns_py`, by the compiled helper where it is built (a record's fields stored in C,
    not by a Python ``__init__``: Flow's 40, 3.3 -> 0.6 us a record)."""
    if GROUP is not None:
        return GROUP.fill_records(cls, _makers(cls)[0], tuple(columns))
    return _records_from_columns_py(cls, columns)


def _as_list(values) -> list:
    return values if type(values) is list else list(values)


def fill_records(columns: list[list]) -> list[Flow]:
    """:func:`records_from_columns` of Flow (``columns`` in FLOW_COLUMNS order)."""
    return records_from_columns(Flow, columns)


make_dns_event = record_maker(DnsEvent)  # DnsEvent(*values), every field given (the naming stage makes them too)
_dns_fields = attrgetter(*DNS_COLUMNS[:-1])  # every field but the last, flow_id
assert DNS_COLUMNS[-1] == "flow_id"


# The fields of a plain flow (see FlowRecords.plain_chunk) that vary from flow to flow, in FLOW_COLUMNS order;
# the others have the values of a Flow made with only its first 15 fields given (syn_count 0)
PLAIN_FIELDS = ("id", "transport", "ip_version", "client", "client_port", "server", "server_port", "state",
                "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "first_ns", "last_ns", "orientation",
                "encapsulated", "ip_fragments", "interfaces")


# what a plain flow holds in the fields that are not PLAIN_FIELDS
_PLAIN_CONSTANT = {f: None for f in FLOW_COLUMNS}
_PLAIN_CONSTANT.update(syn_count=0, icmp_errors=())


class _Transports(dict):
    def __missing__(self, proto: int) -> str:
        t = self[proto] = _TRANSPORTS.get(proto, f"ip-{proto}")
        return t


_TRANSPORT_TEXT = _Transports()


@dataclass(slots=True)
class PlainChunk:
    """A chunk of records in columns, for writers that write a flow without making it.

    ``columns`` holds one list per name of :data:`PLAIN_FIELDS` (``interfaces``: the interface
    bit mask, see :meth:`FlowRecords.interfaces_of`), the values a :class:`Flow` of that position would
    have; ``special`` maps a position in the chunk to its :class:`Flow` where the flow is not plain (a
    TCP flow, a named one, one with ICMP errors, STUN or interfaces numbered 64 and up): there, and only
    there, the columns do not describe the flow (the value is None when the caller asked for no records)."""

    start: int  # the record position of the chunk's first flow (its id is start + 1)
    columns: dict[str, list]
    special: dict[int, Flow | None]

    def __len__(self) -> int:
        return len(self.columns["id"])


class FlowEnds(NamedTuple):
    """A flow's id, transport, first packet and endpoints, client to server, as :class:`Flow` names them:
    what the media pass asks of the flows its packets belong to (:meth:`FlowRecords.ends_by_key`, made
    from the columns without the flows' records)."""

    id: int
    transport: str
    first_ns: int
    client: str
    client_port: int
    server: str
    server_port: int


class KeyFlows(NamedTuple):
    """The flows of some 5-tuples (:meth:`FlowRecords.flows_of_keys`): one row per flow found, in key
    order, then in the order of first packets."""

    key: np.ndarray  # int64: the index of the flow's 5-tuple among the keys asked for
    position: np.ndarray  # int64: the record position (the record's id - 1)
    first_ns: np.ndarray  # int64: the flow's first packet
    a_client: np.ndarray  # bool: the key's "a" endpoint is the flow's client


class _Endpoints(NamedTuple):
    """Flows' 5-tuples as columns, client to server (FlowRecords._endpoints); ``ported``: TCP or UDP."""

    proto: np.ndarray
    ver: np.ndarray
    a_client: np.ndarray
    ported: np.ndarray
    client_hi: np.ndarray
    client_lo: np.ndarray
    client_port: np.ndarray
    server_hi: np.ndarray
    server_lo: np.ndarray
    server_port: np.ndarray


class _MaskTuples(dict):
    """Interface bit mask -> the tuple of its bit numbers (a capture has few distinct masks)."""

    def __missing__(self, mask: int) -> tuple[int, ...]:
        t = self[mask] = tuple(i for i in range(64) if mask >> i & 1)
        return t


class FlowRecords(Sequence):
    """The flows of a capture as a read-only sequence of :class:`Flow`, made from the builder's
    columns when read.

    Iterating, ``len()``, indexing and slicing behave as on a list; the first full iteration keeps
    the records (as a list) for the next ones, since a caller that walks the flows once tends to
    walk them again.  :meth:`stream` yields them without keeping any, for writers."""

    def __init__(self, raw: RawFlows, names: Callable[[int, bool], dict[str, Any]] | None = None) -> None:
        self._raw = raw
        self._names = names
        self._order = _record_order(raw)
        self._a_client, self._how = orientation(raw)
        self._kept: list[Flow] | None = None
        self._ifaces = _MaskTuples()
        self._plain: np.ndarray | None = None
        self._named: np.ndarray | None = None  # per record position: did the naming stage give the flow anything?
        self._extras: dict[int, dict[str, Any]] | None = None  # what it gave the named ones (named_mask)

    @property
    def kept(self) -> list[Flow] | None:
        """The records, once a full iteration has made and kept them (else None)."""
        return self._kept

    def interfaces_of(self, mask: int) -> tuple[int, ...]:
        """The ``interfaces`` of a plain flow whose interface bit mask is ``mask``."""
        return self._ifaces[mask]

    def _plain_flows(self) -> np.ndarray:
        """Per builder flow: could it be plain (no TCP facts, ICMP errors, STUN or interfaces from 64 on)?
        Whether it is also depends on its names."""
        if self._plain is None:
            raw = self._raw
            plain = ~raw.stun_counts[:, :4].any(axis=1) if len(raw.stun_counts) else np.ones(0, bool)
            for d in (raw.tcp, raw.icmp, raw.interfaces_high):
                if d:
                    plain[np.fromiter(d.keys(), np.int64, len(d))] = False
            self._plain = plain
        return self._plain

    def named_mask(self) -> np.ndarray:
        """Per record position: did the naming stage give the flow anything (a name, a handshake outcome,
        STUN details)?  The naming stage is asked once per flow, here, and the answer kept."""
        if self._named is None:
            n = len(self)
            if self._kept is not None:
                self._named = ~np.fromiter(map(operator.eq, map(_names_of, self._kept), repeat(_NO_NAMES)), bool, n)
            elif self._names is not None:
                fids = self._order
                asked = list(map(self._names, fids.tolist(), self._a_client[fids].tolist()))
                named = np.fromiter(map(bool, asked), bool, n)  # None (most flows) or a dict
                some = np.flatnonzero(named)
                named[some] = [not _empty(asked[j]) for j in some.tolist()]
                self._named = named
                self._extras = {j: asked[j] for j in np.flatnonzero(named).tolist()}
            else:
                self._named = np.zeros(n, bool)
        return self._named

    def named_extras(self) -> dict[int, dict[str, Any]] | None:
        """What the naming stage gave each named flow (:meth:`named_mask`), by record position, without
        making its record; None when the records are kept (read them instead)."""
        self.named_mask()
        return self._extras

    def plain_mask(self) -> np.ndarray:
        """Per record position: is the flow plain (see :meth:`plain_chunk`: no TCP facts, ICMP errors,
        STUN or interfaces from 64 on, and nothing from the naming stage)?"""
        return self._plain_flows()[self._order] & ~self.named_mask()

    def judging_columns(self) -> dict[str, np.ndarray]:
        """What judging asks of every flow, as numpy columns in record order: ``proto`` (the IP protocol
        number), ``ip_version``, ``server_hi``/``server_lo`` (the server address, as :func:`addr_text`
        takes it), ``server_port`` (0 where the protocol has no ports), ``orientation`` (an index into
        :data:`ORIENTATIONS`) and ``both_ways`` (packets in both directions)."""
        raw = self._raw
        fids = self._order
        e = self._endpoints(fids)
        return {
            "proto": e.proto,
            "ip_version": e.ver,
            "server_hi": e.server_hi,
            "server_lo": e.server_lo,
            "server_port": np.where(e.ported, e.server_port, 0),
            "orientation": self._how[fids],
            "both_ways": (raw.pk_a[fids] > 0) & (raw.pk_b[fids] > 0),
        }

    def _endpoints(self, fids: np.ndarray) -> "_Endpoints":
        """The 5-tuples of the builder's flows ``fids``, oriented client to server."""
        cols = self._raw.slot_keys.columns
        slot = self._raw.flow_slot[fids]
        a_client = self._a_client[fids]
        proto = cols[0].a[slot]
        ah, al, bh, bl, pa, pb = (cols[k].a[slot] for k in range(2, 8))
        return _Endpoints(proto, cols[1].a[slot], a_client, (proto == F.PROTO_TCP) | (proto == F.PROTO_UDP),
                          np.where(a_client, ah, bh), np.where(a_client, al, bl), np.where(a_client, pa, pb),
                          np.where(a_client, bh, ah), np.where(a_client, bl, al), np.where(a_client, pb, pa))

    def flows_of_keys(self, keys: list[tuple]) -> "KeyFlows":
        """The flows of each canonical 5-tuple of ``keys`` (the builder's key tuples: proto, ip version,
        a_hi, a_lo, b_hi, b_lo, a_port, b_port), found from the columns (:class:`KeyFlows`)."""
        raw = self._raw
        kc = tuple(np.fromiter((k[i] for k in keys), dt, len(keys)) for i, dt in enumerate(raw.slot_keys.KEY_DTYPES))
        slots = raw.slot_keys.find_many(kc) if keys else np.zeros(0, np.int64)
        found = np.flatnonzero(slots >= 0)
        key_of_slot = np.full(len(raw.slot_keys), -1, np.int64)
        key_of_slot[slots[found]] = found
        key_at = key_of_slot[raw.flow_slot[self._order]] if len(self) else np.zeros(0, np.int64)
        pos = np.flatnonzero(key_at >= 0)
        first = raw.first_ns[self._order[pos]]
        o = np.lexsort((first, key_at[pos]))  # stable: record order where first packets tie
        pos, first = pos[o], first[o]
        key = key_at[pos]
        # the key's "a" side is the client where the flow's is (the same canonical key), or where both sides
        # are one endpoint
        same_ends = (kc[2] == kc[4]) & (kc[3] == kc[5]) & (kc[6] == kc[7])
        a_client = self._a_client[self._order[pos]] | same_ends[key]
        return KeyFlows(key, pos, first, a_client)

    def ends_at(self, positions: np.ndarray) -> list[FlowEnds]:
        """:class:`FlowEnds` of the records at ``positions`` (TCP or UDP flows), made from the columns."""
        fids = self._order[positions]
        e = self._endpoints(fids)
        made = zip((positions + 1).tolist(), map(_TRANSPORT_TEXT.__getitem__, e.proto.tolist()),
                   self._raw.first_ns[fids].tolist(), addr_texts(e.ver, e.client_hi, e.client_lo),
                   e.client_port.tolist(), addr_texts(e.ver, e.server_hi, e.server_lo), e.server_port.tolist())
        return list(map(FlowEnds._make, made))

    def at(self, positions) -> list[Flow]:
        """The records at these record positions (kept, or made now)."""
        positions = np.asarray(positions, np.int64)
        if self._kept is not None:
            return list(map(self._kept.__getitem__, positions.tolist()))
        return self._make(positions) if positions.size else []

    def plain_chunk(self, lo: int, hi: int, records: bool = True) -> PlainChunk:
        """The records at positions ``lo`` to ``hi`` (record order) as a :class:`PlainChunk`: columns
        made with numpy, a :class:`Flow` only for the flows that are not plain (``records=False``: None
        in their place, for a writer that has them already)."""
        raw = self._raw
        fids = self._order[lo:hi]
        e = self._endpoints(fids)
        proto, ver, a_client = e.proto, e.ver, e.a_client
        ver_l = ver.tolist()
        kept = self._kept
        if kept is not None:  # the records' own address strings: no text to make
            client = list(map(_client_of, kept[lo:hi]))
            server = list(map(_server_of, kept[lo:hi]))
        else:
            client = addr_texts(ver, e.client_hi, e.client_lo)
            server = addr_texts(ver, e.server_hi, e.server_lo)
        cport = e.client_port.tolist()
        sport = e.server_port.tolist()
        if not e.ported.all():
            for j in np.flatnonzero(~e.ported).tolist():
                cport[j] = sport[j] = None
        pk_a, pk_b = raw.pk_a[fids], raw.pk_b[fids]
        c2s, s2c = np.where(a_client, pk_a, pk_b), np.where(a_client, pk_b, pk_a)
        by_a, by_b = raw.by_a[fids], raw.by_b[fids]
        first_ns = raw.first_ns[fids]
        first_l = first_ns.tolist()
        columns = {
            "id": list(range(lo + 1, lo + 1 + len(fids))),
            "transport": list(map(_TRANSPORT_TEXT.__getitem__, proto.tolist())),
            "ip_version": ver_l,
            "client": client,
            "client_port": cport,
            "server": server,
            "server_port": sport,
            # the same str objects in every record (not one per flow, as tolist of a numpy text array gives)
            "state": list(map(_UDP_STATE.__getitem__, ((c2s > 0) & (s2c > 0)).tolist())),
            "packets_c2s": c2s.tolist(),
            "packets_s2c": s2c.tolist(),
            "bytes_c2s": np.where(a_client, by_a, by_b).tolist(),
            "bytes_s2c": np.where(a_client, by_b, by_a).tolist(),
            "first_ns": first_l,
            "last_ns": _last_ns(first_ns, raw.last_ns[fids], first_l),
            "orientation": list(map(_HOW.__getitem__, self._how[fids].tolist())),
            "encapsulated": raw.encapsulated[fids].astype(bool).tolist(),
            "ip_fragments": raw.fragments[fids].tolist(),
            "interfaces": raw.interface_mask[fids].tolist(),
        }
        plain = self._plain_flows()[fids]
        extras = None
        if self._named is not None:  # asked already (named_mask)
            plain &= ~self._named[lo:hi]
        elif kept is not None:  # the records say what the naming stage gave them
            plain &= ~self.named_mask()[lo:hi]
        elif self._names is not None:
            names = self._names
            extras = list(map(names, fids.tolist(), a_client.tolist()))
            plain &= np.fromiter(map(_empty, extras), bool, len(extras))
        odd = np.flatnonzero(~plain)
        special: dict[int, Flow] = {}
        if odd.size:
            if not records:
                special = dict.fromkeys(odd.tolist())
            elif kept is not None:
                special = {j: kept[lo + j] for j in odd.tolist()}
            else:
                made = self._make(lo + odd, None if extras is None else [extras[j] for j in odd.tolist()])
                special = dict(zip(odd.tolist(), made))
        return PlainChunk(lo, columns, special)

    def _interfaces(self, fid: int, mask: int) -> tuple[int, ...]:
        return tuple(sorted(set(self._ifaces[mask]) | self._raw.interfaces_high[fid]))

    def __len__(self) -> int:
        return int(self._order.size)

    def __getitem__(self, i):
        if self._kept is not None:
            return self._kept[i]
        if isinstance(i, slice):
            return self._make(range(len(self))[i])
        n = len(self)
        if not -n <= i < n:
            raise IndexError("flow index out of range")
        return self._make([i % n])[0]

    def __iter__(self):
        if self._kept is None:
            self._kept = list(self.stream())
        return iter(self._kept)

    def __eq__(self, other) -> bool:
        if isinstance(other, (FlowRecords, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self.stream(), other))
        return NotImplemented

    def __repr__(self) -> str:
        return f"<{len(self)} flows>"

    def __reduce__(self):
        """Pickled (and deep-copied) as the plain list of its records: the builder's state and the
        naming closure it reads from do not cross processes."""
        return (list, (list(self.stream()),))

    def stream(self, chunk: int = CHUNK):
        """Every flow in record order, made ``chunk`` at a time and not kept."""
        if self._kept is not None:
            yield from self._kept
            return
        for lo in range(0, len(self), chunk):
            yield from self._chunk(lo, min(lo + chunk, len(self)))

    def _chunk(self, lo: int, hi: int) -> list[Flow]:
        """The records at positions ``lo`` to ``hi``: the plain ones straight from :meth:`plain_chunk`'s
        columns (one C-level ``map`` over them), the others as :meth:`_make` makes them."""
        c = self.plain_chunk(lo, hi)
        cols = c.columns
        n = hi - lo
        fields = [_as_list(cols[f]) if f in cols else [_PLAIN_CONSTANT[f]] * n for f in FLOW_COLUMNS[:-1]]
        fields.append(list(map(self._ifaces.__getitem__, cols["interfaces"])))
        made = fill_records(fields)
        for j, f in c.special.items():
            made[j] = f
        return made

    def _make(self, positions, extras: list | None = None) -> list[Flow]:
        """The records at these positions (record order); ``extras``: what ``names`` gave for each, when
        already asked."""
        raw = self._raw
        pos = np.asarray(positions, np.int64)
        fids = self._order[pos]
        e = self._endpoints(fids)  # client to server, the texts made at once (as plain_chunk makes them)
        proto_l, ver_l, a_client_l = e.proto.tolist(), e.ver.tolist(), e.a_client.tolist()
        client_l = addr_texts(e.ver, e.client_hi, e.client_lo)
        server_l = addr_texts(e.ver, e.server_hi, e.server_lo)
        cport_l, sport_l = e.client_port.tolist(), e.server_port.tolist()
        if not e.ported.all():
            for j in np.flatnonzero(~e.ported).tolist():
                cport_l[j] = sport_l[j] = None
        pk_a, pk_b, by_a, by_b = raw.pk_a[fids], raw.pk_b[fids], raw.by_a[fids], raw.by_b[fids]
        c2s_l, s2c_l = np.where(e.a_client, pk_a, pk_b).tolist(), np.where(e.a_client, pk_b, pk_a).tolist()
        bc2s_l, bs2c_l = np.where(e.a_client, by_a, by_b).tolist(), np.where(e.a_client, by_b, by_a).tolist()
        how_l = self._how[fids].tolist()
        first_ns, last_ns = raw.first_ns[fids].tolist(), raw.last_ns[fids].tolist()
        encap, frags = raw.encapsulated[fids].tolist(), raw.fragments[fids].tolist()
        stun_rows = raw.stun_counts[fids]
        # TURN ChannelData counts only on a flow that spoke STUN (RFC 8656 section 12: a channel is bound by
        # ChannelBind on the same 5-tuple): alone, 0x40-0x4F first bytes are as likely QUIC or LLMNR
        has_stun = stun_rows[:, :4].any(axis=1).tolist() if len(stun_rows) else []
        masks = raw.interface_mask[fids].tolist()
        tcp, icmp, names = raw.tcp, raw.icmp, self._names
        fid_l = fids.tolist()
        n = len(fid_l)
        # column by column (one C-level map makes the records at the end); per flow only where a flow has
        # TCP facts, ICMP errors, STUN counts, names or high interfaces
        state = ["bidirectional" if c and s_ else "one-way" for c, s_ in zip(c2s_l, s2c_l)]
        syn_count, rst_from, rst_ttl = [0] * n, [None] * n, [None] * n
        for j, t in enumerate(map(tcp.get, fid_l)):
            if t is not None:
                a_client = a_client_l[j]
                state[j] = tcp_state(t, a_client, c2s_l[j], s2c_l[j])
                syn_count[j] = t.syn_count
                if t.rst_dir is not None:
                    rst_from[j] = "client" if (t.rst_dir == 1) == a_client else "server"
                    rst_ttl[j] = t.rst_ttl
        icmp_errors: list = [()] * n
        if icmp:
            for j, errs in enumerate(map(icmp.get, fid_l)):
                if errs:
                    a_client = a_client_l[j]
                    icmp_errors[j] = tuple(err if quoted_a_to_b == a_client else _toward(err, "client")
                                           for err, quoted_a_to_b in errs)
        if extras is None:
            extras = list(map(names, fid_l, a_client_l)) if names is not None else [None] * n
        else:
            extras = list(extras)
        for j in (j for j, h in enumerate(has_stun) if h):
            sc = stun_rows[j].tolist()
            stun = StunSummary(requests=sc[0], indications=sc[1], successes=sc[2], errors=sc[3], channel_data=sc[4])
            extra = dict(extras[j] or ())
            extra["stun"] = _merge_stun(stun, extra["stun"]) if extra.get("stun") is not None else stun
            extras[j] = extra
        named = zip(*(tuple(map(x.get, _NAME_FIELDS)) if x else _NO_NAMES for x in extras)) if n else \
            ((),) * len(_NAME_FIELDS)
        ifaces_of = self._ifaces
        interfaces = list(map(ifaces_of.__getitem__, masks))
        if raw.interfaces_high:
            for j, fid in enumerate(fid_l):
                if fid in raw.interfaces_high:
                    interfaces[j] = self._interfaces(fid, masks[j])
        return fill_records([(pos + 1).tolist(), list(map(_TRANSPORT_TEXT.__getitem__, proto_l)), ver_l, client_l,
                             cport_l, server_l, sport_l, state, syn_count, c2s_l, s2c_l, bc2s_l, bs2c_l, first_ns,
                             last_ns, icmp_errors, rst_from, rst_ttl, list(map(_HOW.__getitem__, how_l)), encap, frags,
                             *map(list, named), interfaces])


_client_of, _server_of = attrgetter("client"), attrgetter("server")
_names_of = attrgetter(*_NAME_FIELDS)
_OCTETS = tuple(map(str, range(256)))
_DOTTED = "{}.{}.{}.{}".format
_HALF_DOTTED = "{}.{}".format
_HALVES_FROM = 1024  # distinct IPv4 addresses in one call from which addr_texts uses _halves
_HALVES: list[str] = []


def _halves() -> list[str]:
    """``"a.b"`` for each 16-bit value ``a << 8 | b``: made once, the first time a chunk has many distinct
    addresses (4 MB, about 15 ms; three times quicker than four octets per address after that)."""
    if not _HALVES:
        _HALVES.extend(f"{a}.{b}" for a in range(256) for b in range(256))
    return _HALVES


def addr_texts(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """``addr_text`` of every (version, hi, lo), the IPv4 ones made from numpy's octets at once (the
    IPv6 ones through addr_text's memo)."""
    v4 = ver == 4
    if not v4.any():
        return list(map(addr_text, ver.tolist(), hi.tolist(), lo.tolist()))
    # one str per distinct address (a client's many flows share theirs, as addr_text's memo made them)
    a, inverse = np.unique(lo.astype(np.int64) & 0xFFFFFFFF, return_inverse=True)
    if a.size >= _HALVES_FROM:  # many addresses (a scan): from the texts of their two 16-bit halves
        half = _halves().__getitem__
        texts = list(map(_HALF_DOTTED, map(half, (a >> 16).tolist()), map(half, (a & 0xFFFF).tolist())))
    else:
        octet = _OCTETS.__getitem__
        texts = list(map(_DOTTED, *(map(octet, ((a >> s_) & 255).tolist()) for s_ in (24, 16, 8, 0))))
    out = list(map(texts.__getitem__, inverse.tolist()))
    if not v4.all():
        for j in np.flatnonzero(~v4).tolist():
            out[j] = addr_text(int(ver[j]), int(hi[j]), int(lo[j]))
    return out


def _last_ns(first: np.ndarray, last: np.ndarray, first_l: list[int]) -> list[int]:
    """``last.tolist()``, with the int objects of ``first_l`` where a flow ends when it begins (a flow of
    one packet: a scan's millions of records then hold one int, not two equal ones)."""
    same = first == last
    if same.all():
        return first_l
    out = last.tolist()
    for j in np.flatnonzero(same).tolist():
        out[j] = first_l[j]
    return out


def _empty(extra) -> bool:
    """Did the naming stage give a flow nothing but None (so that it can be plain)?"""
    if extra:
        for v in extra.values():  # a named flow's first values are seldom all None: usually one look
            if v is not None:
                return False
    return True


def _toward(err, side: str):
    from dataclasses import replace

    return replace(err, toward=side)


_STUN_COUNTS = ("requests", "indications", "successes", "errors", "channel_data")
assert tuple(f.name for f in dataclass_fields(StunSummary))[:5] == _STUN_COUNTS, "StunSummary: counts first"
_STUN_DETAIL = attrgetter(*(f.name for f in dataclass_fields(StunSummary)[5:]))  # every field after the counts


def _merge_stun(counts: StunSummary, detail: StunSummary) -> StunSummary:
    """``detail`` (what the naming stage read of the messages) with the builder's counts of every message."""
    return StunSummary(counts.requests, counts.indications, counts.successes, counts.errors, counts.channel_data,
                       *_STUN_DETAIL(detail))
