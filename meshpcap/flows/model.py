"""Flow records: what the flow stage hands to rules, classification and reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import field, fields
from operator import attrgetter
from typing import Any

from meshpcap._dataclass import dataclass, record_maker, twin_class  # noqa: F401  (record_maker, twin_class: their home was here)

FLOWS_SCHEMA = "meshpcap.flows/2"

TCP_STATES = ("established", "rejected", "no-answer", "reset", "closed", "midstream", "one-way")
UDP_STATES = ("bidirectional", "one-way")

ICMP_UNREACH_CODES = {
    0: "net unreachable",
    1: "host unreachable",
    2: "protocol unreachable",
    3: "port unreachable",
    4: "fragmentation needed",
    5: "source route failed",
    6: "destination network unknown",
    7: "destination host unknown",
    9: "network administratively prohibited",
    10: "host administratively prohibited",
    11: "network unreachable for TOS",
    12: "host unreachable for TOS",
    13: "communication administratively prohibited",
    14: "host precedence violation",
    15: "precedence cutoff in effect",
}
ICMP6_UNREACH_CODES = {
    0: "no route to destination",
    1: "communication administratively prohibited",
    2: "beyond scope of source address",
    3: "address unreachable",
    4: "port unreachable",
    5: "source address failed ingress/egress policy",
    6: "reject route to destination",
}


def icmp_description(ip_version: int, icmp_type: int, code: int) -> str:
    """A readable name for an ICMP/ICMPv6 error (RFC 792, RFC 1812 section 5.2.7.1, RFC 4443 section 3)."""
    if ip_version == 4:
        if icmp_type == 3:
            return "destination unreachable: " + ICMP_UNREACH_CODES.get(code, f"code {code}")
        if icmp_type == 11:
            return "time exceeded"
        if icmp_type == 12:
            return "parameter problem"
        if icmp_type == 4:
            return "source quench"
        if icmp_type == 5:
            return "redirect"
    else:
        if icmp_type == 1:
            return "destination unreachable: " + ICMP6_UNREACH_CODES.get(code, f"code {code}")
        if icmp_type == 2:
            return "packet too big"
        if icmp_type == 3:
            return "time exceeded"
        if icmp_type == 4:
            return "parameter problem"
    return f"ICMP type {icmp_type} code {code}"


def hops_away(ttl: int | None) -> int | None:
    """Hops a packet travelled, from its TTL and the usual initial values 64, 128 and 255."""
    if ttl is None or ttl <= 0:
        return None
    for initial in (64, 128, 255):
        if ttl <= initial:
            return initial - ttl
    return None


def is_admin_prohibited(ip_version: int, icmp_type: int, code: int) -> bool:
    """ICMP codes that firewalls send when they reject on purpose."""
    if ip_version == 4:
        return icmp_type == 3 and code in (9, 10, 13)
    return icmp_type == 1 and code in (1, 5, 6)


def endpoint(addr: str, port: int | None) -> str:
    """``addr:port``, with IPv6 addresses in brackets."""
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP error that quoted one of the flow's packets."""

    type: int
    code: int
    sender: str  # the router or firewall that sent it
    ns: int  # packet timestamp
    description: str
    toward: str = "server"  # which side's packet was quoted as the destination: "server" or "client"

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "code": self.code,
            "sender": self.sender,
            "ns": self.ns,
            "description": self.description,
            "toward": self.toward,
        }


@dataclass(frozen=True, slots=True)
class StunSummary:
    """STUN/TURN traffic seen on a flow (RFC 8489, RFC 8656)."""

    requests: int = 0
    indications: int = 0
    successes: int = 0
    errors: int = 0
    channel_data: int = 0
    methods: tuple[str, ...] = ()  # "Allocate request", "Allocate error 401", ...
    error_codes: tuple[int, ...] = ()
    mapped: tuple[str, ...] = ()  # "203.0.113.9:51000"
    relayed: tuple[str, ...] = ()
    realm: str | None = None
    ms_turn: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "indications": self.indications,
            "successes": self.successes,
            "errors": self.errors,
            "channel_data": self.channel_data,
            "methods": list(self.methods),
            "error_codes": list(self.error_codes),
            "mapped": list(self.mapped),
            "relayed": list(self.relayed),
            "realm": self.realm,
            "ms_turn": self.ms_turn,
        }


@dataclass(frozen=True, slots=True)
class Flow:
    """One bidirectional transport flow, oriented client -> server."""

    id: int
    transport: str  # tcp | udp | icmp | icmpv6 | ip-<n>
    ip_version: int
    client: str
    client_port: int | None
    server: str
    server_port: int | None
    state: str
    syn_count: int
    packets_c2s: int
    packets_s2c: int
    bytes_c2s: int
    bytes_s2c: int
    first_ns: int
    last_ns: int
    icmp_errors: tuple[IcmpError, ...] = ()
    rst_from: str | None = None  # which side sent the first TCP RST: client | server
    rst_ttl: int | None = None  # its IPv4 TTL / IPv6 hop limit (a forged RST comes from fewer hops away)
    orientation: str = "ports"  # how the client was chosen: syn | syn-ack | ports | first-packet
    encapsulated: bool = False
    ip_fragments: int = 0  # packets that were IP fragments other than the last of their datagram
    # names and handshake outcomes (the naming stage fills these)
    sni: str | None = None
    alpn: tuple[str, ...] | None = None
    ech: bool | None = None
    quic_version: str | None = None
    dns_names: tuple[str, ...] | None = None
    http_host: str | None = None
    connect_target: str | None = None
    connect_status: int | None = None
    tls_alert: str | None = None
    tls_alert_from: str | None = None
    tls_version: str | None = None
    cert_issuer: str | None = None
    cert_subject: str | None = None
    stun: StunSummary | None = None
    name: str | None = None
    name_source: str | None = None
    sni_literal: str | None = None  # an IP address the client put in server_name: evidence, not a name
    interfaces: tuple[int, ...] = ()  # capture interfaces (indices into capture["interfaces"]) its packets came on

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(zip(FLOW_COLUMNS, _flow_values(self)))
        out["icmp_errors"] = [e.to_dict() for e in self.icmp_errors]
        for name in _FLOW_NESTED:
            v = out[name]
            if isinstance(v, StunSummary):
                out[name] = v.to_dict()
            elif isinstance(v, tuple):
                out[name] = list(v)
        return out


FLOW_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Flow))
# For Flow.to_dict, worked out once rather than per flow: all field values in one call, and
# the fields whose declared type can hold a tuple or a StunSummary (alpn, dns_names, stun),
# the only ones to_dict converts besides icmp_errors.
_flow_values = attrgetter(*FLOW_COLUMNS)
_FLOW_NESTED: tuple[str, ...] = tuple(
    f.name for f in fields(Flow)
    if f.name != "icmp_errors" and ("tuple" in str(f.type).lower() or "StunSummary" in str(f.type))
)


@dataclass(frozen=True, slots=True)
class DnsEvent:
    """One DNS query and what became of it."""

    ns: int  # time of the query (or of the answer when the query was not captured)
    client: str
    server: str
    transport: str
    qname: str
    qtype: str
    rcode: str | None  # None: no answer seen
    answers: tuple[str, ...] = ()  # addresses and CNAME targets in answer order
    sinkhole: bool = False
    flow_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ns": self.ns,
            "client": self.client,
            "server": self.server,
            "transport": self.transport,
            "qname": self.qname,
            "qtype": self.qtype,
            "rcode": self.rcode,
            "answers": list(self.answers),
            "sinkhole": self.sinkhole,
            "flow_id": self.flow_id,
        }


DNS_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(DnsEvent))


def flow_row(f: Flow) -> dict[str, Any]:
    """A flow's fields as one DataFrame row: ``to_dict`` plus its Community ID."""
    from .community import flow_community_id

    d = f.to_dict()
    d["community_id"] = flow_community_id(f.transport, f.client, f.server, f.client_port, f.server_port)
    return d


@dataclass(slots=True)
class FlowTable:
    """Flows of one capture plus what the capture said about itself."""

    capture: dict[str, Any]
    # a list, or (from read_flows) a FlowRecords: a read-only sequence that makes its records when read
    flows: Sequence[Flow] = field(default_factory=list)
    dns: list[DnsEvent] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    media: Any = None  # the media pass's result (meshpcap.flows.media.MediaResult) when it ran

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": FLOWS_SCHEMA,
            "capture": self.capture,
            "flows": [f.to_dict() for f in getattr(self.flows, "stream", lambda: self.flows)()],
            "dns": [e.to_dict() for e in self.dns],
            "stats": self.stats,
        }

    def to_dataframe(self):
        """One row per flow, the columns and dtypes of ``meshpcap.schema.FLOW_FIELDS`` (also when
        there are no flows): the record's fields plus ``first_seen``/``last_seen``/``duration``
        and ``community_id``."""
        from ..schema import frame

        return frame("flows", [flow_row(f) for f in getattr(self.flows, "stream", lambda: self.flows)()])

    def dns_dataframe(self):
        """Every DNS query and what became of it (``meshpcap.schema.DNS_FIELDS``)."""
        from ..schema import frame

        return frame("dns", [e.to_dict() for e in self.dns])

    def __len__(self) -> int:
        return len(self.flows)

    def __repr__(self) -> str:
        c = self.capture
        return (
            f"<FlowTable {c.get('path')}: {len(self.flows)} flows from {c.get('packets')} packets"
            f"{', truncated' if c.get('truncated') else ''}>"
        )
