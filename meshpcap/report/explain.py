"""``meshpcap explain CAPTURE FLOW_ID``: everything known about one flow.

Its packets in order (a second read of the capture, columnar: each batch is decoded by
:func:`meshpcap.decode.frames.decode_batch` and the flow's 5-tuple picked out with array masks),
its handshake decoded again from those packets (TLS ClientHello, ServerHello, alerts and
certificate; QUIC Initial; STUN/TURN transactions; HTTP CONNECT), the DNS lookups that named it,
the rule and verdict with the reasoning step by step, and, when tshark is installed, Wireshark's
own dissection and expert info of its first packets through pyshark (:func:`wireshark_view`).

:func:`explain_document` gathers a plain dict (``meshpcap.explain/1``); :func:`render_text`
writes it for a terminal.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
from typing import Any

import numpy as np

from ..decode import frames as F
from ..decode.buffer import DecodeError
from ..errors import MeshpcapError
from .flows import ns_text

EXPLAIN_SCHEMA = "meshpcap.explain/1"
MAX_PACKETS = 2000  # packets listed at most (the count is always given)
WIRESHARK_PACKETS = 6  # first packets dissected by tshark
TCP_FLAG_NAMES = ((0x02, "SYN"), (0x10, "ACK"), (0x08, "PSH"), (0x01, "FIN"), (0x04, "RST"), (0x20, "URG"),
                  (0x40, "ECE"), (0x80, "CWR"))


def _split(addr: str) -> tuple[int, int, int]:
    ip = ipaddress.ip_address(addr)
    v = int(ip)
    return ip.version, v >> 64, v & 0xFFFFFFFFFFFFFFFF


def flags_text(flags: int) -> str:
    return ",".join(name for bit, name in TCP_FLAG_NAMES if flags & bit) or "-"


def flow_packets(path: str | os.PathLike, flow) -> tuple[list[dict], dict[str, list[tuple[int, bytes]]], list[bytes]]:
    """The packets of ``flow`` (a :class:`meshpcap.flows.model.Flow`) in capture order.

    Returns (packets, TCP segments per direction as (seq, payload), client UDP datagrams).
    One pass over the file; per batch, the masks are array operations over every packet."""
    from ..capture import open_capture

    proto = {"tcp": F.PROTO_TCP, "udp": F.PROTO_UDP, "icmp": F.PROTO_ICMP, "icmpv6": F.PROTO_ICMPV6}.get(flow.transport)
    if proto is None and flow.transport.startswith("ip-"):
        proto = int(flow.transport[3:])
    cv, chi, clo = _split(flow.client)
    sv, shi, slo = _split(flow.server)
    cport = -1 if flow.client_port is None else flow.client_port
    sport = -1 if flow.server_port is None else flow.server_port
    packets: list[dict] = []
    segments: dict[str, list[tuple[int, bytes]]] = {"c2s": [], "s2c": []}
    datagrams: list[bytes] = []
    total = 0
    with open_capture(path) as cap:
        for batch in cap.batches():
            d = F.decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
            base = (d.reason == 0) & (d.proto == proto) & (d.ip_version == cv)
            if not base.any():
                continue
            c2s = base & (d.src_hi == np.uint64(chi)) & (d.src_lo == np.uint64(clo)) & (d.dst_hi == np.uint64(shi)) \
                & (d.dst_lo == np.uint64(slo)) & (d.sport == cport) & (d.dport == sport)
            s2c = base & (d.src_hi == np.uint64(shi)) & (d.src_lo == np.uint64(slo)) & (d.dst_hi == np.uint64(chi)) \
                & (d.dst_lo == np.uint64(clo)) & (d.sport == sport) & (d.dport == cport)
            idx = np.nonzero(c2s | s2c)[0]
            for i in idx.tolist():
                i = int(i)
                ns = int(batch.ts_ns[i])
                if ns < flow.first_ns or ns > flow.last_ns:
                    continue  # the same 5-tuple in another flow (port reuse)
                direction = "c2s" if c2s[i] else "s2c"
                total += 1
                plen = int(d.payload_cap[i])
                start = int(d.payload[i])
                payload = bytes(batch.data[start:start + plen]) if plen > 0 and start > 0 else b""
                if proto == F.PROTO_TCP and payload:
                    segments[direction].append((int(d.tcp_seq[i]), payload))
                elif proto == F.PROTO_UDP and payload and direction == "c2s":
                    datagrams.append(payload)
                if len(packets) < MAX_PACKETS:
                    p = {"record": batch.first_record + i + 1, "ns": ns, "t": (ns - flow.first_ns) / 1e9,
                         "dir": direction, "ip_len": int(d.ip_len[i]), "payload": int(d.payload_len[i]),
                         "ttl": int(d.ttl[i]), "flags": None, "seq": None, "ack": None}
                    if proto == F.PROTO_TCP:
                        p["flags"] = flags_text(int(d.tcp_flags[i]))
                        p["seq"] = int(d.tcp_seq[i])
                        p["ack"] = int(d.tcp_ack[i])
                    p["_udp"] = payload if proto == F.PROTO_UDP else None
                    packets.append(p)
    for p in packets:
        p["_total"] = total
    return packets, segments, datagrams


def reassemble(segments: list[tuple[int, bytes]], limit: int = 1 << 20) -> bytes:
    """One direction's TCP bytes from the first segment on, in sequence order, up to the first gap."""
    if not segments:
        return b""
    first = segments[0][0]
    rel = sorted((((s - first) & 0xFFFFFFFF), data) for s, data in segments)
    out = bytearray()
    for off, data in rel:
        if off > len(out):
            break  # a gap: what follows is not the continuation
        new = data[len(out) - off:]
        out += new
        if len(out) >= limit:
            break
    return bytes(out)


def _stun_list(messages: list[tuple[str, bytes]]) -> list[dict]:
    from ..decode.stun import looks_like_stun, parse_stun

    out = []
    for direction, payload in messages:
        if not looks_like_stun(payload):
            continue
        try:
            m = parse_stun(payload)
        except DecodeError:
            continue
        out.append({"dir": direction, "type": m.type_name, "transaction": m.transaction_id.hex(),
                    "error_code": m.error_code, "error_reason": m.error_reason, "realm": m.realm,
                    "software": m.software, "mapped": _addr_port(m.xor_mapped or m.mapped),
                    "relayed": _addr_port(m.relayed), "lifetime": m.lifetime})
    return out


def _dns_tcp(segments: dict) -> list[tuple[str, bytes]]:
    from ..decode.dns import split_dns_tcp

    out = []
    for direction in ("c2s", "s2c"):
        try:
            msgs, _ = split_dns_tcp(reassemble(segments[direction]))
        except DecodeError:
            msgs = []
        out += [(direction, m) for m in msgs]
    return out


def _dns_list(messages: list[tuple[str, bytes]]) -> list[dict]:
    from ..decode.dns import TYPE_NAMES, parse_dns

    out = []
    for direction, payload in messages:
        try:
            m = parse_dns(payload)
        except DecodeError:
            continue
        q = m.questions[0] if m.questions else None
        out.append({"dir": direction, "id": m.id, "response": m.is_response, "rcode": m.rcode_name if m.is_response
                    else None, "qname": q.name if q else None, "qtype": TYPE_NAMES.get(q.qtype, str(q.qtype)) if q else None,
                    "answers": [r.value for r in m.answers if r.value]})
    return out


def _addr_port(ap) -> str | None:
    if not ap:
        return None
    a, p = ap
    return f"[{a}]:{p}" if ":" in a else f"{a}:{p}"


def handshake(flow, packets: list[dict], segments: dict, datagrams: list[bytes]) -> dict[str, Any]:
    """The flow's handshake, decoded again from its own packets."""
    out: dict[str, Any] = {}
    if flow.transport == "tcp":
        c = reassemble(segments["c2s"])
        s = reassemble(segments["s2c"])
        out["client_bytes"] = len(c)
        out["server_bytes"] = len(s)
        _tls_handshake(c, s, out)
        _http_heads(c, s, out)
        if c and c[:1] != b"\x16" and "http_request" not in out:
            _tcp_stun(c, s, out)
    if flow.server_port in (53, 5353) or flow.client_port == 5353:
        dns_msgs = _dns_list([(p["dir"], p["_udp"]) for p in packets if p.get("_udp")] if flow.transport == "udp"
                             else _dns_tcp(segments))
        if dns_msgs:
            out["dns"] = dns_msgs[:200]
    if flow.transport == "udp":
        msgs = [(p["dir"], p["_udp"]) for p in packets if p.get("_udp")]
        stun = _stun_list(msgs)
        if stun:
            out["stun"] = stun[:200]
        if datagrams:
            _quic_initial(datagrams, out)
    return out


def _tls_handshake(c: bytes, s: bytes, out: dict[str, Any]) -> None:
    """The ClientHello and client alert of the client's stream ``c``, the server's flight of ``s``."""
    from ..decode import tls

    if c[:1] == b"\x16":
        try:
            ch = tls.read_client_hello(c)
            if ch is not None:
                out["client_hello"] = {
                    "sni": ch.sni, "sni_invalid": ch.sni_raw_invalid, "alpn": list(ch.alpn),
                    "versions": [tls.TLS_VERSION_NAMES.get(v, hex(v)) for v in ch.versions],
                    "ech": ch.ech, "cipher_suites": [f"0x{x:04x}" for x in ch.cipher_suites],
                    "extensions": list(ch.extensions), "length": ch.length}
        except DecodeError as exc:
            out["client_hello_error"] = str(exc)
        try:
            a = tls.read_alerts(c)
            if a is not None:
                out["client_alert"] = a.name
        except DecodeError:
            pass
    if s[:1] in (b"\x16", b"\x15"):
        try:
            sf = tls.read_server_flight(s)
            out["server_flight"] = {
                "server_hello": sf.server_hello,
                "version": tls.TLS_VERSION_NAMES.get(sf.version, hex(sf.version)) if sf.version else None,
                "cipher_suite": f"0x{sf.cipher_suite:04x}" if sf.cipher_suite is not None else None,
                "alpn": sf.alpn, "alert": sf.alert.name if sf.alert else None,
                "cert_subject": sf.cert_subject, "cert_issuer": sf.cert_issuer,
                "hello_retry": sf.hello_retry, "encrypted": sf.encrypted, "complete": sf.complete}
        except DecodeError as exc:
            out["server_flight_error"] = str(exc)


def _http_heads(c: bytes, s: bytes, out: dict[str, Any]) -> None:
    """The HTTP request head of the client's stream ``c`` and the response head of ``s`` (a proxy's answer)."""
    from ..decode import http

    if not http.looks_like_http_request(c[:16]):
        return
    req = http.read_request_head(c)
    if req is not None:
        out["http_request"] = {"method": req.method, "target": req.target, "version": req.version,
                               "host": req.host, "connect_host": req.connect_host,
                               "connect_port": req.connect_port}
    resp = http.read_response_head(s)
    if resp is not None:
        out["http_response"] = {"status": resp.status, "reason": resp.reason, "version": resp.version}


def _tcp_stun(c: bytes, s: bytes, out: dict[str, Any]) -> None:
    """The STUN/TURN messages of a TCP flow, both ways (back to back, RFC 8489 section 6.2.2; TURN over TCP 443)."""
    from ..decode.stun import split_stun_tcp

    msgs: list[tuple[str, bytes]] = []
    for direction, stream in (("c2s", c), ("s2c", s)):
        try:
            found, _ = split_stun_tcp(stream)
        except DecodeError:
            found = []
        msgs += [(direction, m) for m in found]
    stun = _stun_list(msgs)
    if stun:
        out["stun"] = stun


def _quic_initial(datagrams: list[bytes], out: dict[str, Any]) -> None:
    """The QUIC long header of the first datagram and the ClientHello of the first Initials, when it is QUIC."""
    from ..decode import quic

    if not quic.is_long_header(datagrams[0]):
        return
    try:
        lh = quic.parse_long_header(datagrams[0])
        out["quic_initial"] = {"version": quic.version_name(lh.version), "dcid": lh.dcid.hex(),
                               "scid": lh.scid.hex(), "type": lh.packet_type}
        got = quic.client_hello_from_initials(datagrams[:8])
        if got is not None:
            _, ch = got
            out["quic_initial"]["client_hello"] = {"sni": ch.sni, "alpn": list(ch.alpn), "ech": ch.ech}
    except (DecodeError, AttributeError) as exc:
        out["quic_error"] = str(exc)


def dns_for(ft, flow) -> list[dict]:
    """The lookups that named the flow: answers holding its server address, or queries for its names,
    before it started; and the lookups it carried itself (a DNS flow)."""
    names = {n for n in (flow.dns_names or ()) if n} | {n for n in (flow.sni, flow.http_host) if n}
    out = []
    for e in ft.dns:
        own = e.flow_id == flow.id
        named = e.ns <= flow.first_ns and (flow.server in e.answers or e.qname in names)
        if own or named:
            d = e.to_dict()
            d["relation"] = "carried by this flow" if own else "named this flow"
            out.append(d)
    return out


def reasoning(v, findings, flow) -> list[str]:
    """How the verdict came about, one step per line."""
    f = flow
    steps = [f"flow {f.id}: {f.transport.upper()} {f.client}:{f.client_port} -> {f.server}:{f.server_port}; "
             f"client chosen by {f.orientation}; state {f.state}"
             + (f" after {f.syn_count} SYNs" if f.transport == "tcp" else "")
             + f"; {f.packets_c2s} packets out, {f.packets_s2c} back"]
    if f.name:
        steps.append(f"named {f.name} from {f.name_source}"
                     + (f"; DNS chain {' -> '.join(f.dns_names)}" if f.dns_names else ""))
    else:
        steps.append("no name seen (no SNI, Host, CONNECT or DNS answer for the address): judged by address")
    if v.rule:
        steps.append(f"rule {v.rule} covers it, matched by {v.matched_by or '?'}"
                     + (f" ({v.destination})" if v.destination else "")
                     + ("; service-tag membership verified" if v.tag_verified else
                        "; service-tag membership NOT verified" if v.tag_verified is False else ""))
    else:
        steps.append("no rule of the profile covers this destination, transport and port")
    outcome = f"verdict {v.verdict}" + (f", blocked by {v.blocked_by}" if v.blocked_by else "") \
        + f" (confidence {v.confidence})"
    steps.append(outcome + (f": {v.detail}" if v.detail else ""))
    for e in f.icmp_errors:
        steps.append(f"ICMP from {e.sender} at {ns_text(e.ns)}: {e.description}")
    if f.rst_from:
        steps.append(f"first RST from the {f.rst_from}" + (f" (TTL {f.rst_ttl})" if f.rst_ttl is not None else ""))
    if f.tls_alert:
        steps.append(f"TLS alert {f.tls_alert} from the {f.tls_alert_from}")
    if f.connect_status is not None:
        steps.append(f"proxy answered CONNECT {f.connect_target} with {f.connect_status}")
    for fd in findings:
        if f.id in (fd.flow_ids or ()):
            steps.append(f"finding {fd.id} ({fd.kind}, {fd.severity}): {fd.title}; fix: {fd.fix}")
    return steps


def display_filter(flow) -> str:
    ipf = "ipv6" if ":" in flow.client else "ip"
    if flow.transport in ("tcp", "udp") and flow.client_port is not None:
        return (f"{ipf}.addr=={flow.client} && {ipf}.addr=={flow.server} && {flow.transport}.port=={flow.client_port}"
                f" && {flow.transport}.port=={flow.server_port}")
    return f"{ipf}.addr=={flow.client} && {ipf}.addr=={flow.server}"


def explain_document(report, flow_id: int, path: str | os.PathLike, wireshark: bool = True) -> dict[str, Any]:
    """Everything about one flow of an analysed capture, as a plain dict."""
    ft = report.flow_table
    verdicts = {v.flow.id: v for v in report.judgement.flows}
    v = verdicts.get(flow_id)
    if v is None:
        raise MeshpcapError(f"{path}: no flow {flow_id} (flows are numbered 1..{len(ft.flows)})")
    f = v.flow
    packets, segments, datagrams = flow_packets(path, f)
    hs = handshake(f, packets, segments, datagrams)
    total = packets[0]["_total"] if packets else 0
    for p in packets:
        p.pop("_udp", None)
        p.pop("_total", None)
    doc = {
        "schema": EXPLAIN_SCHEMA,
        "capture": str(path),
        "flow": f.to_dict(),
        "verdict": v.to_dict(),
        "packets_total": total,
        "packets": packets,
        "handshake": hs,
        "dns": dns_for(ft, f),
        "reasoning": reasoning(v, report.judgement.findings, f),
        "findings": [fd.to_dict() for fd in report.judgement.findings if f.id in (fd.flow_ids or ())],
        "display_filter": display_filter(f),
        "wireshark": wireshark_view(path, display_filter(f)) if wireshark else {"status": "not requested"},
    }
    return doc


# ---------------------------------------------------------------- Wireshark's own view, through pyshark

def wireshark_view(path: str | os.PathLike, display_filter: str, count: int = WIRESHARK_PACKETS) -> dict[str, Any]:
    """tshark's dissection (layers and fields) and expert info of the first ``count`` packets
    matching ``display_filter``; ``{"status": "tshark not installed", ...}`` without tshark.

    pyshark runs an asyncio event loop of its own, which clashes with a loop already running in
    the caller's thread (Jupyter): the work runs in a thread with its own new loop."""
    if shutil.which("tshark") is None:
        return {"status": "unavailable", "reason": "tshark is not installed: Wireshark's dissection skipped "
                                                   "(apt-get install tshark)"}
    try:
        import pyshark  # noqa: F401
    except ImportError:
        return {"status": "unavailable", "reason": "pyshark is not installed: pip install pyshark"}
    import threading

    result: dict[str, Any] = {}

    def work() -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            result.update(_dissect(str(path), display_filter, count, loop))
        except Exception as exc:  # tshark's own failure, reported as one line
            result.update({"status": "failed", "reason": f"tshark: {type(exc).__name__}: {exc}"})
        finally:
            import gc

            gc.collect()  # tshark's pipes and transports are closed while their loop still runs
            loop.close()

    t = threading.Thread(target=work, name="meshpcap-pyshark", daemon=True)
    t.start()
    t.join(120)
    if t.is_alive():
        return {"status": "failed", "reason": "tshark did not finish within 120 s"}
    return result


def _dissect(path: str, display_filter: str, count: int, loop) -> dict[str, Any]:
    import pyshark

    cap = pyshark.FileCapture(path, display_filter=display_filter, custom_parameters=["-o", "tcp.relative_sequence_numbers:TRUE"],
                              eventloop=loop)
    packets = []
    it = iter(cap)
    try:
        for i, pkt in enumerate(it):
            if i >= count:
                break
            layers = []
            expert = []
            for layer in pkt.layers:
                fields = {}
                for name in layer.field_names:
                    value = layer.get_field(name)
                    if value is None:
                        continue
                    if name.startswith("_ws_expert") or name in ("expert",):
                        continue
                    fields[name] = str(value)
                layers.append({"name": layer.layer_name, "fields": fields})
                for name in layer.field_names:
                    if "expert" in name and name.endswith("message"):
                        expert.append(f"{layer.layer_name}: {layer.get_field(name)}")
            packets.append({"number": int(pkt.number), "protocols": pkt.frame_info.protocols,
                            "highest_layer": pkt.highest_layer, "layers": layers,
                            "expert": sorted(set(expert))})
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()  # the generator's own cleanup stops tshark now, inside this loop
        cap.close()
    return {"status": "ok", "display_filter": display_filter, "packets": packets}


# ---------------------------------------------------------------- text

def render_text(doc: dict[str, Any]) -> str:
    f = doc["flow"]
    v = doc["verdict"]
    out = [f"flow {f['id']} of {doc['capture']}: {f['transport'].upper()} {f['client']}:{f['client_port']} -> "
           f"{f['server']}:{f['server_port']}  {v['verdict'].upper()}" + (f" ({v['blocked_by']})" if v.get("blocked_by")
                                                                        else ""),
           f"  {ns_text(f['first_ns'])} .. {ns_text(f['last_ns'])}; Wireshark: {doc['display_filter']}", "",
           "WHY"]
    out += [f"  {i}. {s}" for i, s in enumerate(doc["reasoning"], 1)]
    out += ["", f"PACKETS ({doc['packets_total']}" + (f", first {len(doc['packets'])} listed" if
                                                      doc["packets_total"] > len(doc["packets"]) else "") + ")"]
    out.append(f"  {'#':>7} {'t (s)':>10}  {'dir':<3} {'flags':<12} {'ip len':>6} {'data':>5} {'ttl':>3}")
    for p in doc["packets"]:
        arrow = "->" if p["dir"] == "c2s" else "<-"
        out.append(f"  {p['record']:>7} {p['t']:>10.6f}  {arrow:<3} {(p['flags'] or '-'):<12} {p['ip_len']:>6} "
                   f"{p['payload']:>5} {p['ttl']:>3}")
    hs = doc["handshake"]
    out += ["", "HANDSHAKE"]
    if not any(k for k in hs if k not in ("client_bytes", "server_bytes")):
        out.append("  (nothing decodable: no TLS, QUIC, STUN, DNS or HTTP at the start of the flow)")
    for key in ("client_hello", "server_flight", "http_request", "http_response", "quic_initial"):
        if hs.get(key):
            out.append(f"  {key.replace('_', ' ')}: " + ", ".join(f"{k}={_short(v)}" for k, v in hs[key].items()
                                                                    if v not in (None, [], False)))
    for key in ("client_alert", "client_hello_error", "server_flight_error", "quic_error"):
        if hs.get(key):
            out.append(f"  {key.replace('_', ' ')}: {hs[key]}")
    for m in hs.get("dns") or []:
        arrow = "->" if m["dir"] == "c2s" else "<-"
        out.append(f"  DNS {arrow} id {m['id']} {'response ' + str(m['rcode']) if m['response'] else 'query'} "
                   f"{m['qtype']} {m['qname']}" + (f": {' -> '.join(m['answers'])}" if m["answers"] else ""))
    for m in hs.get("stun") or []:
        arrow = "->" if m["dir"] == "c2s" else "<-"
        bits = [m["type"]] + [f"{k}={m[k]}" for k in ("error_code", "error_reason", "realm", "software", "mapped",
                                                       "relayed", "lifetime") if m.get(k) is not None]
        out.append(f"  STUN {arrow} {' '.join(map(str, bits))} (txn {m['transaction'][:12]})")
    out += ["", "DNS"]
    if not doc["dns"]:
        out.append("  (no lookup named this flow)")
    for e in doc["dns"]:
        out.append(f"  {ns_text(e['ns'])} {e['qtype']} {e['qname']}: {e['rcode'] or 'no answer'}"
                   + (f" -> {' -> '.join(e['answers'])}" if e["answers"] else "") + f"  ({e['relation']})")
    ws = doc["wireshark"]
    out += ["", "WIRESHARK"]
    if ws.get("status") != "ok":
        out.append(f"  {ws.get('reason') or ws.get('status')}")
    else:
        for p in ws["packets"]:
            out.append(f"  frame {p['number']}: {p['protocols']}")
            for e in p["expert"]:
                out.append(f"    expert: {e}")
    return "\n".join(printable(line) for line in out) + "\n"


def printable(text: str) -> str:
    """A line for a terminal: control characters from the wire (an escape sequence in a STUN
    SOFTWARE string, a certificate subject) shown as escapes instead of reaching the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else (c.encode("unicode_escape").decode("ascii")) for c in text)


def _short(v: Any, n: int = 120) -> str:
    s = ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return s if len(s) <= n else s[: n - 3] + "..."
