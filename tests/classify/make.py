"""Hand-built flows, DNS events and judging contexts for the classify tests."""

from __future__ import annotations

from meshpcap.classify.verdicts import Context
from meshpcap.flows.model import DnsEvent, Flow, FlowTable, IcmpError, icmp_description
from meshpcap.rules import load_profile, load_service_tags
from meshpcap.rules.match import RuleMatcher
from tests.conftest import SAMPLES

S = 1_000_000_000
T0 = 1_718_892_000 * S  # 2024-06-20T14:00:00Z, as the samples
END = T0 + 60 * S  # default end of the capture: a minute after it began

CLIENT = "10.20.0.15"
RELAY = "52.113.144.132"  # AzureCloud in the sample snapshot
MEDIA = "20.73.100.20"  # AzureCloud
MESHSVC = "20.50.2.40"  # AzureCloud
OTHER = "198.51.100.77"  # in no list
FIREWALL = "10.20.0.1"

_PROFILES: dict = {}
_TAGS = []


def profile(name: str = "multi-room"):
    if name not in _PROFILES:
        _PROFILES[name] = load_profile(name)
    return _PROFILES[name]


def tags():
    if not _TAGS:
        _TAGS.append(load_service_tags(SAMPLES / "ServiceTags_Public_SAMPLE.json"))
    return _TAGS[0]


def matcher(prof=None, with_tags: bool = True) -> RuleMatcher:
    prof = prof or profile()
    return RuleMatcher(prof.rules, tags() if with_tags else None)


def context(with_tags: bool = True, last_ns: int | None = END, one_direction: bool = False, dropped: int = 0,
            prof=None) -> Context:
    prof = prof or profile()
    return Context(prof, matcher(prof, with_tags), with_tags, last_ns, one_direction, dropped)


def flow(id: int = 1, transport: str = "tcp", server: str = MESHSVC, server_port: int | None = 443,
         state: str | None = None, **kw) -> Flow:
    """A flow that worked, unless the keywords say otherwise (``state``, packet counts, names...)."""
    if state is None:
        state = "closed" if transport == "tcp" else "bidirectional"
    defaults = dict(
        ip_version=6 if ":" in server else 4, client="2001:db8:20::15" if ":" in server else CLIENT,
        client_port=50000 + id, syn_count=1 if transport == "tcp" else 0, packets_c2s=8, packets_s2c=8,
        bytes_c2s=2000, bytes_s2c=6000, first_ns=T0 + S, last_ns=T0 + 3 * S,
        orientation="syn" if transport == "tcp" else "ports",
    )
    defaults.update(kw)
    return Flow(id=id, transport=transport, server=server, server_port=server_port, state=state, **defaults)


def unanswered(id: int = 1, transport: str = "tcp", server: str = MEDIA, server_port: int = 30012, **kw) -> Flow:
    """SYNs (TCP) or datagrams (UDP) that got nothing back."""
    if transport == "tcp":
        base = dict(state="no-answer", syn_count=3, packets_c2s=3, packets_s2c=0, bytes_s2c=0)
    else:
        base = dict(state="one-way", packets_c2s=5, packets_s2c=0, bytes_s2c=0)
    base.update(kw)
    return flow(id, transport, server, server_port, **base)


def icmp_error(type_: int = 3, code: int = 13, sender: str = FIREWALL, ip_version: int = 4) -> IcmpError:
    return IcmpError(type_, code, sender, T0 + 2 * S, icmp_description(ip_version, type_, code))


def dns(qname: str, rcode: str | None = "NOERROR", flow_id: int | None = None, answers: tuple[str, ...] = (),
        sinkhole: bool = False, ns: int = T0 + S // 2, qtype: str = "A") -> DnsEvent:
    return DnsEvent(ns, CLIENT, FIREWALL, "udp", qname, qtype, rcode, answers, sinkhole, flow_id)


def dns_flow(id: int, **kw) -> Flow:
    base = dict(packets_c2s=1, packets_s2c=1, bytes_c2s=80, bytes_s2c=120)
    base.update(kw)
    return flow(id, "udp", FIREWALL, 53, **base)


def table(flows, dns_events=(), **capture) -> FlowTable:
    cap = {"path": "hand-built.pcapng", "packets": 100, "first_ns": T0, "last_ns": END, "truncated": None,
           "dropped_by_capture": None, "cut_by_snaplen": 0, "undecoded": {}}
    cap.update(capture)
    return FlowTable(capture=cap, flows=list(flows), dns=list(dns_events))
