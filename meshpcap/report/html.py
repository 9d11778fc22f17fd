"""The HTML report: one self-contained page rendered from the ``meshpcap.report`` document.

The page is a renderer over the same document as ``--format json`` (STYLE lesson 14): everything
on it is computed from ``Report.to_dict()`` here or in :mod:`meshpcap.report.firewall`, and the
document is embedded in ``<script type="application/json" id="meshpcap-report">`` so a tool can
read the page back (:func:`read_embedded`).

Safety: the template engine escapes every string (Jinja2 ``autoescape=True``); the embedded JSON
has ``<``, ``>``, ``&``, U+2028 and U+2029 escaped so neither ``</script>`` nor ``<!--`` can end
it; a Content-Security-Policy meta tag allows no network request at all (``default-src 'none'``)
and runs only the page's own script and style, named by their SHA-256 hashes.

Size: a document whose compact JSON is larger than :data:`EMBED_PLAIN_LIMIT` is embedded as
``{"schema": ..., "encoding": "gzip+base64", "data": ...}``; :func:`read_embedded` reads both.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from . import firewall
from .quality import nice_step, quality_view
from .flows import ns_text

EMBED_PLAIN_LIMIT = 256 * 1024  # bytes of compact JSON embedded as is; larger documents are gzip+base64
FLOW_TABLE_ROWS = 2000  # flows listed in the page's table at most: failing ones first (all are in the document)
TIMELINE_ROWS = 160  # destinations (rows) drawn on the timeline at most (the flow table lists the flows)
BARS_PER_ROW = 40  # flows drawn per row at most
DNS_MARKS = 400  # DNS lookups drawn at most
FAILING = ("blocked", "unexpected")
VERDICT_ORDER = {"blocked": 0, "unexpected": 1, "allowed": 2, "unrelated": 3}


# ---------------------------------------------------------------- embedding

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_UNSAFE = re.compile("[<>&\u2028\u2029]")


def script_json(obj: Any) -> str:
    """JSON text that is safe inside ``<script type="application/json">``: no ``</script>``, ``<!--``,
    ``&`` or line separators can appear in it, and ``json.loads`` of it gives ``obj`` back."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _JSON_UNSAFE.sub(lambda m: _JSON_ESCAPES[m[0]], text)


def embed_document(doc: dict[str, Any]) -> str:
    text = script_json(doc)
    if len(text.encode("utf-8")) <= EMBED_PLAIN_LIMIT:
        return text
    data = base64.b64encode(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
    return script_json({"schema": doc.get("schema"), "encoding": "gzip+base64", "data": data})


_EMBED = re.compile(r'<script type="application/json" id="meshpcap-report">(.*?)</script>', re.S)


def read_embedded(page: str) -> dict[str, Any]:
    """The report document embedded in a page written by :func:`render_html`."""
    m = _EMBED.search(page)
    if m is None:
        raise ValueError("no embedded meshpcap report in this page")
    obj = json.loads(m[1])
    if isinstance(obj, dict) and obj.get("encoding") == "gzip+base64" and set(obj) == {"schema", "encoding", "data"}:
        obj = json.loads(gzip.decompress(base64.b64decode(obj["data"])).decode("utf-8"))
    return obj


# ---------------------------------------------------------------- what the page shows, from the document

def _rel(ns: int | None, t0: int) -> str:
    if ns is None:
        return "-"
    return f"+{(ns - t0) / 1e9:.3f} s"


def endpoint(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _ip_field(addr: str) -> str:
    try:
        return "ipv6.addr" if ipaddress.ip_address(addr).version == 6 else "ip.addr"
    except ValueError:
        return "ip.addr"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wireshark_filter(flows: list[dict], qname: str | None = None) -> str | None:
    """A display filter showing the packets of these flows: ``ip.addr==S && udp.port==P`` per
    destination (joined with ``||``); a DNS name filter when only a failed lookup is known."""
    clauses = []
    for f in flows:
        t, port, server = f.get("transport"), f.get("server_port"), f.get("server")
        if not server:
            continue
        base = f"{_ip_field(server)}=={server}"
        if t in ("tcp", "udp") and port is not None:
            c = f"{base} && {t}.port=={port}"
        elif t in ("icmp", "icmpv6"):
            c = f"{base} && {t}"
        else:
            c = base
        if c not in clauses:
            clauses.append(c)
    if not clauses and qname:
        return f"dns.qry.name == {_quoted(qname)}"
    if not clauses:
        return None
    clauses = clauses[:8]
    if len(clauses) == 1:
        return clauses[0]
    return " || ".join(f"({c})" for c in clauses)


def finding_view(f: dict, flows: dict[int, dict], dns: list[dict] | None = None) -> dict[str, Any]:
    """A finding with the fields the judge branch adds (clients, first_ns, last_ns) derived from its
    flows when the document does not carry them (from the failed lookups of its name when it is a
    DNS failure without listed flows), and a Wireshark filter."""
    mine = [flows[i] for i in f.get("flow_ids") or [] if i in flows]
    failing = [x for x in mine if x.get("verdict") in FAILING] or mine
    if not failing and f.get("blocked_by") == "dns-failure" and dns:
        failing = [{"client": e.get("client"), "first_ns": e["ns"], "last_ns": e["ns"]} for e in dns
                   if e.get("qname") == f.get("destination") and e.get("rcode") != "NOERROR"]
        mine = failing
    clients = f.get("clients")
    if clients is None:
        clients = sorted({x["client"] for x in mine if x.get("client")})
    first = f["first_ns"] if "first_ns" in f else (min(x["first_ns"] for x in failing) if failing else None)
    last = f["last_ns"] if "last_ns" in f else (max(x["last_ns"] for x in failing) if failing else None)
    if f.get("blocked_by") == "dns-failure" and f.get("destination"):
        filt = wireshark_filter([], f["destination"])  # the lookups of that name, not all DNS traffic
    else:
        filt = wireshark_filter(failing)
    return {**f, "clients": list(clients), "first_ns": first, "last_ns": last, "filter": filt}


def evidence(rule: str, flows_by_rule: dict[str, list[dict]], limit: int = 8) -> list[str]:
    out = []
    by: dict[str, list[dict]] = {}
    for f in flows_by_rule.get(rule, []):
        by.setdefault(f.get("verdict") or "?", []).append(f)
    for verdict in sorted(by, key=lambda v: VERDICT_ORDER.get(v, 9)):
        fl = by[verdict]
        ids = ", ".join(str(x["id"]) for x in fl[:limit]) + (f" +{len(fl) - limit} more" if len(fl) > limit else "")
        why = sorted({x["blocked_by"] for x in fl if x.get("blocked_by")})
        names = sorted({x.get("destination") or x.get("server") for x in fl})[:3]
        out.append(f"{len(fl)} {verdict}" + (f" ({', '.join(why)})" if why else "") + f": flow {ids}"
                   + (f" to {', '.join(n for n in names if n)}" if names else ""))
    return out


def _flow_label(f: dict) -> str:
    name = f.get("name") or f.get("destination") or f.get("server")
    return f"{f.get('transport', '?').upper()} {name}:{f.get('server_port')}" if f.get("server_port") is not None \
        else f"{f.get('transport', '?').upper()} {name}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


def _notes(f: dict) -> list[str]:
    """Retries and other marks for a flow's timeline bar."""
    notes = []
    if f.get("transport") == "tcp" and (f.get("syn_count") or 0) > 1:
        notes.append(f"{f['syn_count']} SYNs")
    st = f.get("stun") or {}
    if st.get("requests") and not st.get("successes") and not st.get("errors"):
        notes.append(f"{st['requests']} STUN requests unanswered")
    elif st.get("error_codes") and not st.get("successes"):
        notes.append("STUN error " + ", ".join(map(str, st["error_codes"])))
    if f.get("tls_alert"):
        notes.append(f"TLS alert {f['tls_alert']}")
    if f.get("connect_status") is not None and f["connect_status"] >= 400:
        notes.append(f"CONNECT {f['connect_status']}")
    if f.get("icmp_errors"):
        notes.append("ICMP " + f["icmp_errors"][0].get("description", ""))
    if f.get("rst_from"):
        notes.append(f"RST from {f['rst_from']}")
    return notes


def timeline(doc: dict[str, Any], flows: list[dict]) -> dict[str, Any]:
    """Geometry of the inline SVG timeline (the template draws it; no script needed)."""
    relevant = [f for f in flows if f.get("verdict") != "unrelated"]
    t0, t1 = _timeline_bounds(doc, relevant)
    span = max(t1 - t0, 1)
    ranked, chosen = _timeline_destinations(relevant)
    left, width, row_h, top = 300, 640, 16, 46
    total = left + width + 300

    def x(ns: int) -> float:
        return round(left + (ns - t0) / span * width, 1)

    rows = [_timeline_row(fl, top + i * row_h, x, t0) for i, fl in enumerate(chosen)]
    drawn = sum(min(len(fl), BARS_PER_ROW) for fl in chosen)
    height = top + max(len(rows), 1) * row_h + 40
    return {"rows": rows, "dns": _dns_marks(doc, x, t0), "marks": _media_marks(doc, flows, relevant, x, t0, t1),
            "ticks": _timeline_ticks(span, left, width), "left": left, "width": width,
            "total": total, "height": height, "top": top, "row_h": row_h,
            "omitted": len(relevant) - drawn, "rows_omitted": len(ranked) - len(chosen), "dns_omitted": max(len(doc.get("dns") or []) - DNS_MARKS, 0),
            "start": ns_text(t0), "end": ns_text(t1)}


def _timeline_bounds(doc: dict[str, Any], relevant: list[dict]) -> tuple[int, int]:
    """The capture's first and last instants, or those of the flows and DNS events drawn."""
    cap = doc.get("capture") or {}
    t0 = cap.get("first_ns")
    t1 = cap.get("last_ns")
    stamps = [f["first_ns"] for f in relevant] + [f["last_ns"] for f in relevant]
    stamps += [e["ns"] for e in doc.get("dns") or []]
    if t0 is None or t1 is None:
        t0, t1 = (min(stamps), max(stamps)) if stamps else (0, 1)
    return t0, t1


def _timeline_destinations(relevant: list[dict]) -> tuple[list[list[dict]], list[list[dict]]]:
    """All destination rows ranked (failing first), and the rows drawn, in time order."""
    # one row per destination (transport, name or address, port): a retry or a reconnection is
    # another bar on the same row; rows with failing flows are drawn first when there are too many
    groups: dict[tuple, list[dict]] = {}
    for f in sorted(relevant, key=lambda f: (f["first_ns"], f["id"])):
        groups.setdefault((f.get("transport"), _flow_label(f)), []).append(f)
    ranked = sorted(groups.values(), key=lambda fl: (min(VERDICT_ORDER.get(f.get("verdict"), 9) for f in fl),
                                                    fl[0]["first_ns"]))
    chosen = sorted(ranked[:TIMELINE_ROWS], key=lambda fl: (fl[0]["first_ns"], fl[0]["id"]))
    return ranked, chosen


def _timeline_row(fl: list[dict], y: int, x: Callable[[int], float], t0: int) -> dict[str, Any]:
    """One destination's row: a bar per flow (the first BARS_PER_ROW), its label and notes."""
    bars = []
    for f in fl[:BARS_PER_ROW]:
        x0, x1 = x(f["first_ns"]), x(f["last_ns"])
        notes = _notes(f)
        bars.append({
            "x": x0, "w": max(round(x1 - x0, 1), 2.0), "verdict": f.get("verdict") or "unrelated",
            "title": (f"flow {f['id']}: {_flow_label(f)} from {f.get('client')}; {f.get('verdict')}"
                      + (f" ({f['blocked_by']})" if f.get("blocked_by") else "") + f"; {f.get('state')}; "
                      f"{_rel(f['first_ns'], t0)} .. {_rel(f['last_ns'], t0)}"
                      + (f"; {'; '.join(notes)}" if notes else "")),
        })
    failing = [f for f in fl if f.get("verdict") in FAILING]
    notes = _notes(failing[0] if failing else fl[0])
    if len(fl) > 1:
        notes.insert(0, f"{len(fl)} flows" + (f", {len(failing)} failing" if failing else "")
                     + (f", first {len(bars)} drawn" if len(fl) > len(bars) else ""))
    ids = ",".join(str(f["id"]) for f in fl[:3]) + ("…" if len(fl) > 3 else "")
    return {"y": y, "bars": bars, "label": _short(f"#{ids} {_flow_label(fl[0])}", 44),
            "notes": "; ".join(notes), "end": max(b["x"] + b["w"] for b in bars)}


def _dns_marks(doc: dict[str, Any], x: Callable[[int], float], t0: int) -> list[dict[str, Any]]:
    """A tick per DNS event (at most DNS_MARKS; failures are always drawn first)."""
    dns = []
    events = doc.get("dns") or []
    bad = [e for e in events if e.get("rcode") != "NOERROR" or e.get("sinkhole")]
    good = [e for e in events if not (e.get("rcode") != "NOERROR" or e.get("sinkhole"))]
    for e in sorted((bad + good)[:DNS_MARKS], key=lambda e: e["ns"]):  # failures are always drawn first
        failed = e.get("rcode") != "NOERROR" or e.get("sinkhole")
        dns.append({"x": x(e["ns"]), "failed": failed,
                    "title": f"DNS {e.get('qtype')} {e.get('qname')}: {e.get('rcode') or 'no answer'}"
                             + (" (sinkhole)" if e.get("sinkhole") else "") + f" at {_rel(e['ns'], t0)}"})
    return dns


def _media_marks(doc: dict[str, Any], flows: list[dict], relevant: list[dict], x: Callable[[int], float],
                 t0: int, t1: int) -> list[dict[str, Any]]:
    """The "UDP media stopped" and "fallback to TCP 443" marks, when the capture shows them."""
    marks = []
    by_id = {f["id"]: f for f in flows}
    fallback_ns = None
    for g in doc.get("expected") or []:
        if g.get("status") == "met-by-fallback":
            tcp = [by_id[i] for i in g.get("flow_ids") or [] if i in by_id and by_id[i].get("transport") == "tcp"
                   and by_id[i].get("verdict") == "allowed"]
            if tcp:
                start = min(f["first_ns"] for f in tcp)
                fallback_ns = start if fallback_ns is None else min(fallback_ns, start)
    udp = [f for f in relevant if f.get("transport") == "udp" and f.get("rule") and f.get("server_port") != 53]
    if udp:
        stop = max(f["last_ns"] for f in udp)
        # media that ended well before the capture did, or whose path the client abandoned
        if fallback_ns is not None or any(f.get("verdict") == "blocked" for f in udp) or t1 - stop > 2_000_000_000:
            marks.append({"x": x(stop), "label": "UDP media stopped", "cls": "m-stop",
                          "title": f"last UDP packet under a rule at {_rel(stop, t0)}"})
    if fallback_ns is not None:
        marks.append({"x": x(fallback_ns), "label": "fallback to TCP 443", "cls": "m-fallback",
                      "title": f"first fallback TCP flow at {_rel(fallback_ns, t0)}"})
    return marks


def _timeline_ticks(span: int, left: int, width: int) -> list[dict[str, Any]]:
    """Axis ticks: about 8 round steps of seconds from the start."""
    step = nice_step(span / 1e9 / 8)
    ticks = []
    s = 0.0
    while s <= span / 1e9 + 1e-9 and len(ticks) < 40:
        ticks.append({"x": round(left + s * 1e9 / span * width, 1), "label": f"{s:g} s"})
        s += step
    return ticks


def clients_view(flows: list[dict], findings: list[dict]) -> list[dict]:
    out: dict[str, dict] = {}
    for f in flows:
        if f.get("verdict") == "unrelated":
            continue
        c = out.setdefault(f["client"], {"client": f["client"], "allowed": 0, "blocked": 0, "unexpected": 0,
                                         "blocked_to": {}, "findings": []})
        v = f.get("verdict")
        if v in c:
            c[v] += 1
        if v == "blocked":
            key = f"{_flow_label(f)} ({f.get('blocked_by') or 'blocked'})"
            c["blocked_to"][key] = c["blocked_to"].get(key, 0) + 1
    for fv in findings:
        for cl in fv["clients"]:
            if cl in out and fv.get("severity") != "info":
                out[cl]["findings"].append(fv["id"])
    rows = sorted(out.values(), key=lambda c: (-c["blocked"], -c["unexpected"], c["client"]))
    for c in rows:
        c["blocked_to"] = [f"{k} \u00d7{n}" if n > 1 else k for k, n in sorted(c["blocked_to"].items())]
    return rows


SEEN_FIELDS = (("cert_subject", "certificate subject"), ("cert_issuer", "certificate issuer"),
               ("sni", "TLS server name (SNI)"), ("http_host", "HTTP Host"), ("connect_target", "CONNECT target"),
               ("tls_alert", "TLS alert"))


def seen_values(flows: list[dict], limit: int = 200) -> list[dict]:
    """Distinct names, certificates and alerts the flows that matter carried, with their flows."""
    out = []
    for key, label in SEEN_FIELDS:
        vals: dict[str, list[int]] = {}
        for f in flows:
            v = f.get(key)
            if v and f.get("verdict") != "unrelated":
                vals.setdefault(str(v), []).append(f["id"])
        for v, ids in sorted(vals.items())[:limit]:
            out.append({"what": label, "value": v, "flows": ", ".join(map(str, ids[:10]))
                        + (f" +{len(ids) - 10} more" if len(ids) > 10 else "")})
    realms: dict[str, list[int]] = {}
    for f in flows:
        st = f.get("stun") or {}
        if st.get("realm") and f.get("verdict") != "unrelated":
            realms.setdefault(st["realm"], []).append(f["id"])
    for v, ids in sorted(realms.items())[:limit]:
        out.append({"what": "TURN realm", "value": v, "flows": ", ".join(map(str, ids[:10]))})
    return out


def flow_rows(flows: list[dict], t0: int | None) -> list[list[str]]:
    base = t0 if t0 is not None else (min((f["first_ns"] for f in flows), default=0))
    rows = []
    for f in flows:
        rows.append([
            str(f["id"]), f.get("transport") or "", endpoint(f.get("client"), f.get("client_port")),
            endpoint(f.get("server"), f.get("server_port")), f.get("name") or "", f.get("state") or "",
            f"{(f['first_ns'] - base) / 1e9:.3f}", f"{(f['last_ns'] - f['first_ns']) / 1e9:.3f}",
            str((f.get("packets_c2s") or 0) + (f.get("packets_s2c") or 0)),
            str((f.get("bytes_c2s") or 0) + (f.get("bytes_s2c") or 0)),
            f.get("verdict") or "", f.get("blocked_by") or "", f.get("rule") or "",
        ])
    return rows


FLOW_HEAD = ["id", "proto", "client", "server", "name", "state", "start s", "dur s", "pkts", "bytes", "verdict",
             "blocked by", "rule"]


def page_model(doc: dict[str, Any], unrelated_hidden: int = 0) -> dict[str, Any]:
    flows = doc.get("flows") or []
    by_id = {f["id"]: f for f in flows}
    flows_by_rule: dict[str, list[dict]] = {}
    for f in flows:
        if f.get("rule"):
            flows_by_rule.setdefault(f["rule"], []).append(f)
    findings = [finding_view(f, by_id, doc.get("dns")) for f in doc.get("findings") or []]
    cap = doc.get("capture") or {}
    t0 = cap.get("first_ns")
    listed = flows
    if len(flows) > FLOW_TABLE_ROWS:
        listed = sorted(flows, key=lambda f: (VERDICT_ORDER.get(f.get("verdict"), 9), f["first_ns"]))[:FLOW_TABLE_ROWS]
        listed.sort(key=lambda f: f["id"])
    checklist = [{**c, "evidence": evidence(c["rule"], flows_by_rule)} for c in doc.get("checklist") or []]
    fw = firewall.build(doc)
    dur = None
    if cap.get("first_ns") is not None and cap.get("last_ns") is not None:
        dur = (cap["last_ns"] - cap["first_ns"]) / 1e9
    facts = [
        ("file", cap.get("path")),
        ("format", ", ".join(x for x in (cap.get("format"), cap.get("compression"),
                                         ", ".join(cap.get("link_types") or [])) if x)),
        ("packets", f"{cap.get('packets')} ({cap.get('decoded')} decoded)"),
        ("span", f"{ns_text(cap.get('first_ns'))} .. {ns_text(cap.get('last_ns'))}"
                 + (f" ({dur:.3f} s)" if dur is not None else "")),
        ("profile", f"{doc['profile'].get('id')} ({doc['profile'].get('date')}): {doc['profile'].get('title')}"),
        ("service tags", (f"{doc['service_tags'].get('file')} (date {doc['service_tags'].get('date') or 'unknown'}, changeNumber "
                          f"{doc['service_tags'].get('change_number')})") if doc.get("service_tags")
         else "none (AzureCloud membership not verified)"),
    ]
    quality = list(doc.get("warnings") or [])
    if cap.get("truncated"):
        t = cap["truncated"]
        quality.append(f"capture truncated at record {t.get('record')} (byte {t.get('offset')}): {t.get('reason')}")
    if cap.get("dropped_by_capture"):
        quality.append(f"the capturing host reported {cap['dropped_by_capture']} dropped packets")
    if cap.get("cut_by_snaplen"):
        quality.append(f"{cap['cut_by_snaplen']} packets were cut by the snapshot length")
    if cap.get("undecoded"):
        quality.append("undecoded: " + ", ".join(f"{k}: {v}" for k, v in cap["undecoded"].items()))
    counts = doc.get("counts") or {}
    return {
        "doc": doc, "verdict": str(doc.get("verdict") or "unknown"), "facts": facts, "quality": quality,
        "counts": counts, "findings": findings, "checklist": checklist, "expected": doc.get("expected") or [],
        "timeline": timeline(doc, flows), "clients": clients_view(flows, findings),
        "flow_head": FLOW_HEAD, "flow_rows": flow_rows(listed, t0), "unrelated_hidden": unrelated_hidden,
        "flows_not_listed": len(flows) - len(listed),
        "dns": _dns_rows(doc, t0), "seen": seen_values(flows), "t0": t0, "rel": _rel, "ns_text": ns_text,
        "firewall": fw, "fw_text": firewall.render_text(fw, doc), "fw_panos": firewall.render_panos(fw),
        "fw_nft": firewall.render_nftables(fw), "fw_forti": firewall.render_fortigate(fw),
        "mq": quality_view(doc),
    }


def _dns_rows(doc: dict[str, Any], t0: int | None, limit: int = 500) -> dict[str, Any]:
    events = doc.get("dns") or []
    # failures first: they are the ones a finding may be about
    chosen = [e for e in events if e.get("rcode") != "NOERROR" or e.get("sinkhole")]
    chosen += [e for e in events if not (e.get("rcode") != "NOERROR" or e.get("sinkhole"))]
    chosen = sorted(chosen[:limit], key=lambda e: e["ns"])
    base = t0 if t0 is not None else 0
    rows = [[f"{(e['ns'] - base) / 1e9:.3f}", e.get("client") or "", e.get("qtype") or "", e.get("qname") or "",
             e.get("rcode") or "no answer", " -> ".join(e.get("answers") or []),
             "" if e.get("flow_id") is None else str(e["flow_id"])] for e in chosen]
    return {"rows": rows, "omitted": len(events) - len(chosen)}


# ---------------------------------------------------------------- rendering

@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("meshpcap.report", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    return env


@lru_cache(maxsize=1)
def _assets() -> tuple[str, str]:
    base = resources.files("meshpcap.report") / "templates"
    return (base / "report.css").read_text(encoding="utf-8"), (base / "report.js").read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(css: str, js: str) -> str:
    """No network request of any kind; only the page's own style and script, by hash."""
    return (f"default-src 'none'; style-src {_sha256(css)}; script-src {_sha256(js)}; img-src 'none'; "
            "font-src 'none'; connect-src 'none'; media-src 'none'; object-src 'none'; frame-src 'none'; "
            "worker-src 'none'; manifest-src 'none'; base-uri 'none'; form-action 'none'")


def render_html_document(doc: dict[str, Any], unrelated_hidden: int = 0) -> str:
    """The page for a report document (``Report.to_dict()``)."""
    css, js = _assets()
    model = page_model(doc, unrelated_hidden)
    page = _environment().get_template("report.html.j2").render(
        **model, css=css, js=js, csp=content_security_policy(css, js), embedded=embed_document(doc))
    return page


def render_html(r, show_unrelated: bool = False) -> str:
    """``meshpcap analyze --format html``: flows unrelated to the profile are listed on request only
    (the embedded document is ``r.to_dict(show_unrelated)``, the same flows the page lists)."""
    from ..classify.verdicts import unrelated_count

    doc = r.to_dict(show_unrelated)
    hidden = 0 if show_unrelated else unrelated_count(r.judgement.flows)
    return render_html_document(doc, hidden)
