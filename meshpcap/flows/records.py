"""Turn the builder's arrays into oriented :class:`Flow` records with a state."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..decode import frames as F
from .engine import RawFlows, TcpFacts, addr_text
from .model import Flow, StunSummary

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
    return np.argsort(raw.first_rec, kind="stable").tolist()


def flow_order(raw: RawFlows) -> list[tuple[int, bool]]:
    """(flow, a_is_client) in record order: the calls :func:`build_records` makes to ``names``."""
    keys, slot, first_a = raw.slot_keys, raw.flow_slot.tolist(), raw.first_from_a.tolist()
    return [(fid, orient(keys[slot[fid]], raw.tcp.get(fid), first_a[fid])[0]) for fid in record_order(raw)]


def build_records(raw: RawFlows, names: Callable[[int, bool], dict[str, Any]] | None = None) -> list[Flow]:
    """Oriented flow records sorted by their first packet; ids count from 1 in that order."""
    out: list[Flow] = []
    # whole columns as Python ints once, rather than a numpy scalar per field and flow
    slot, first_a = raw.flow_slot.tolist(), raw.first_from_a.tolist()
    pk_a, pk_b, by_a, by_b = raw.pk_a.tolist(), raw.pk_b.tolist(), raw.by_a.tolist(), raw.by_b.tolist()
    first_ns, last_ns = raw.first_ns.tolist(), raw.last_ns.tolist()
    encap, frags = raw.encapsulated.tolist(), raw.fragments.tolist()
    # TURN ChannelData counts only on a flow that spoke STUN (RFC 8656 section 12: a channel is bound by
    # ChannelBind on the same 5-tuple): alone, 0x40-0x4F first bytes are as likely QUIC or LLMNR
    has_stun = raw.stun_counts[:, :4].any(axis=1).tolist() if len(raw.stun_counts) else []
    for new_id, fid in enumerate(record_order(raw), start=1):
        key = raw.slot_keys[slot[fid]]
        proto, ver, ah, al, bh, bl, pa, pb = key
        t = raw.tcp.get(fid)
        a_client, how = orient(key, t, first_a[fid])
        a_addr, b_addr = addr_text(ver, ah, al), addr_text(ver, bh, bl)
        if a_client:
            client, cport, server, sport = a_addr, pa, b_addr, pb
            c2s, s2c, bc2s, bs2c = pk_a[fid], pk_b[fid], by_a[fid], by_b[fid]
        else:
            client, cport, server, sport = b_addr, pb, a_addr, pa
            c2s, s2c, bc2s, bs2c = pk_b[fid], pk_a[fid], by_b[fid], by_a[fid]
        has_ports = proto in (F.PROTO_TCP, F.PROTO_UDP)
        rst_from = rst_ttl = None
        if t is not None:
            state = tcp_state(t, a_client, c2s, s2c)
            syn_count = t.syn_count
            if t.rst_dir is not None:
                rst_from = "client" if (t.rst_dir == 1) == a_client else "server"
                rst_ttl = t.rst_ttl
        else:
            state = "bidirectional" if (c2s and s2c) else "one-way"
            syn_count = 0
        icmp = []
        for err, quoted_a_to_b in raw.icmp.get(fid, ()):
            toward_server = quoted_a_to_b == a_client
            icmp.append(err if toward_server else _toward(err, "client"))
        stun = None
        if has_stun[fid]:
            sc = raw.stun_counts[fid].tolist()
            stun = StunSummary(requests=sc[0], indications=sc[1], successes=sc[2], errors=sc[3], channel_data=sc[4])
        extra = names(fid, a_client) if names is not None else {}
        if stun is not None and extra.get("stun") is not None:
            extra["stun"] = _merge_stun(stun, extra["stun"])
        elif stun is not None:
            extra["stun"] = stun
        out.append(Flow(
            id=new_id,
            transport=_TRANSPORTS.get(proto, f"ip-{proto}"),
            ip_version=ver,
            client=client,
            client_port=cport if has_ports else None,
            server=server,
            server_port=sport if has_ports else None,
            state=state,
            syn_count=syn_count,
            packets_c2s=c2s,
            packets_s2c=s2c,
            bytes_c2s=bc2s,
            bytes_s2c=bs2c,
            first_ns=first_ns[fid],
            last_ns=last_ns[fid],
            icmp_errors=tuple(icmp),
            rst_from=rst_from,
            rst_ttl=rst_ttl,
            orientation=how,
            encapsulated=encap[fid],
            ip_fragments=frags[fid],
            **extra,
        ))
    return out


def _toward(err, side: str):
    from dataclasses import replace

    return replace(err, toward=side)


def _merge_stun(counts: StunSummary, detail: StunSummary) -> StunSummary:
    from dataclasses import replace

    return replace(detail, requests=counts.requests, indications=counts.indications, successes=counts.successes,
                   errors=counts.errors, channel_data=counts.channel_data)
