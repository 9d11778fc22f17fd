"""Renderers for ``meshpcap flows``: each returns a string."""

from __future__ import annotations

import csv
import io
import json
from enum import Enum

from tabulate import tabulate

from ..flows.model import FLOW_COLUMNS, FlowTable


class FlowFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def ns_text(ns: int | None) -> str:
    """ISO 8601 UTC with microseconds, from integer nanoseconds."""
    if ns is None:
        return "-"
    import datetime as dt

    secs, rem = divmod(int(ns), 1_000_000_000)
    t = dt.datetime.fromtimestamp(secs, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"


def endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def capture_summary(capture: dict) -> list[str]:
    """Lines that say what the capture is and what in it could not be read."""
    lines = [
        f"capture: {capture.get('path')} ({capture.get('format')}"
        + (f", {capture['compression']}" if capture.get("compression") else "")
        + f", {', '.join(capture.get('link_types') or []) or 'no interfaces'})",
        f"packets: {capture.get('packets')}  decoded: {capture.get('decoded')}  "
        f"span: {ns_text(capture.get('first_ns'))} .. {ns_text(capture.get('last_ns'))}",
    ]
    und = capture.get("undecoded") or {}
    if und:
        lines.append("undecoded: " + ", ".join(f"{k}: {v}" for k, v in und.items()))
    if capture.get("truncated"):
        t = capture["truncated"]
        lines.append(f"TRUNCATED at record {t.get('record')} (byte {t.get('offset')}): {t.get('reason')}")
    if capture.get("dropped_by_capture"):
        lines.append(f"the capturing host reported {capture['dropped_by_capture']} dropped packets")
    if capture.get("cut_by_snaplen"):
        lines.append(f"{capture['cut_by_snaplen']} packets were cut by the snapshot length")
    return lines


def flows_table(ft: FlowTable) -> str:
    rows = []
    for f in ft.flows:
        rows.append([
            f.id, f.transport, endpoint(f.client, f.client_port), endpoint(f.server, f.server_port), f.state,
            f"{f.packets_c2s}/{f.packets_s2c}", f"{f.bytes_c2s}/{f.bytes_s2c}",
            (f.name or "") + (f" ({f.name_source})" if f.name_source else ""),
            _outcome(f),
        ])
    head = ["id", "proto", "client", "server", "state", "pkts c>s/s>c", "bytes c>s/s>c", "name", "evidence"]
    out = capture_summary(ft.capture)
    out.append(f"flows: {len(ft.flows)}")
    out.append("")
    out.append(tabulate(rows, head, tablefmt="simple") if rows else "(no flows)")
    return "\n".join(out) + "\n"


def _outcome(f) -> str:
    bits = []
    if f.quic_version:
        bits.append(f"QUIC {f.quic_version}")
    if f.tls_version:
        bits.append(f.tls_version)
    if f.ech:
        bits.append("ECH")
    if f.connect_status is not None:
        bits.append(f"CONNECT {f.connect_status}")
    if f.tls_alert:
        bits.append(f"alert {f.tls_alert} from {f.tls_alert_from}")
    if f.cert_issuer:
        bits.append(f"cert issuer {f.cert_issuer}")
    if f.stun is not None:
        s = f.stun
        bits.append(f"STUN {s.requests}req/{s.successes}ok/{s.errors}err" + (f" chan {s.channel_data}" if s.channel_data else ""))
        if s.error_codes:
            bits.append("errors " + ",".join(map(str, s.error_codes)))
    for e in f.icmp_errors[:2]:
        bits.append(f"ICMP {e.description} from {e.sender}")
    if f.syn_count > 1:
        bits.append(f"{f.syn_count} SYNs")
    return "; ".join(bits)


def flows_json(ft: FlowTable) -> str:
    return json.dumps(ft.to_dict(), indent=2, sort_keys=False) + "\n"


def flows_csv(ft: FlowTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FLOW_COLUMNS)
    for f in ft.flows:
        d = f.to_dict()
        w.writerow([_cell(d[c]) for c in FLOW_COLUMNS])
    return buf.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


RENDERERS = {FlowFormat.table: flows_table, FlowFormat.json: flows_json, FlowFormat.csv: flows_csv}


def render_flows(ft: FlowTable, fmt: FlowFormat | str) -> str:
    return RENDERERS[FlowFormat(fmt)](ft)
