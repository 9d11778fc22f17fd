"""Renderers for ``meshpcap flows``: each returns a string."""

from __future__ import annotations

import gc
import io
import json
from json.encoder import INFINITY, encode_basestring_ascii

from .formats import FlowFormat
from .sanitize import CsvWriter, csv_text, terminal_text
from ..flows.model import FLOW_COLUMNS, FlowTable, endpoint


def ns_text(ns: int | None) -> str:
    """ISO 8601 UTC with microseconds, from integer nanoseconds."""
    if ns is None:
        return "-"
    import datetime as dt

    secs, rem = divmod(int(ns), 1_000_000_000)
    t = dt.datetime.fromtimestamp(secs, dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1000:06d}Z"


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
    out = [terminal_text(line) for line in out]  # text from the capture never reaches the terminal raw
    if rows:
        from tabulate import tabulate  # imported here: json and csv output do not need it

        out.append(tabulate(terminal_cells(rows), head, tablefmt="simple"))
    else:
        out.append("(no flows)")
    return "\n".join(out) + "\n"


def terminal_cells(rows: list[list]) -> list[list]:
    """Table rows with every text cell through :func:`terminal_text` (escaped before tabulate measures them)."""
    return [[terminal_text(c) if isinstance(c, str) else c for c in row] for row in rows]


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
    return json_indent2(ft.to_dict()) + "\n"


def json_indent2(obj) -> str:
    """Exactly ``json.dumps(obj, indent=2)``, about three times faster.

    With an indent, ``json.dumps`` falls back to its pure-Python generator encoder; this
    builds the same text with one list of pieces and the C string escaper.  The values
    that make up almost all of a flow table (None, int, str, bool, empty lists) are
    written inline in the dict and list loops rather than through a call per value, and
    each string key is escaped once per depth, together with the separator before it.
    Everything else (subclasses of str/int/float/list/tuple/dict, non-str keys, floats)
    takes the general path, which follows ``json.encoder._make_iterencode``."""
    out: list[str] = []
    app = out.append
    ebs = encode_basestring_ascii
    # depth's indent -> {key: ",\n<indent>\"key\": "}; only keys whose type is exactly str
    # go in, so a lookup never meets a key with its own __eq__/__hash__ (or True == 1).
    key_pieces: dict[str, dict[str, str]] = {}

    def enc_dict(o, ind: str) -> None:  # o: a non-empty dict
        ni = ind + "  "
        kc = key_pieces.get(ni)
        if kc is None:
            kc = key_pieces[ni] = {}
        lead = ",\n" + ni
        first = len(out)
        for k, v in o.items():
            if type(k) is str:
                ek = kc.get(k)
                if ek is None:
                    ek = kc[k] = lead + ebs(k) + ": "
            else:
                ek = lead + ebs(_json_key(k)) + ": "
            app(ek)
            if v is None:
                app("null")
            else:
                t = type(v)
                if t is int:
                    app(repr(v))
                elif t is str:
                    app(ebs(v))
                elif t is bool:
                    app("true" if v else "false")
                elif t is list or t is tuple:
                    if v:
                        enc_list(v, ni)
                    else:
                        app("[]")
                elif t is dict:
                    if v:
                        enc_dict(v, ni)
                    else:
                        app("{}")
                else:
                    enc(v, ni)
        if len(out) > first:
            out[first] = "{" + out[first][1:]  # the first item's lead: "{\n" instead of ",\n"
        else:  # a dict subclass whose items() yielded nothing: what json.dumps writes then
            app("{\n" + ni)
        app("\n" + ind + "}")

    def enc_list(o, ind: str) -> None:  # o: a non-empty list or tuple
        ni = ind + "  "
        t = type(o)
        if (t is list or t is tuple) and type(o[0]) is str:
            try:  # a list of strings (ALPN ids, names, addresses): one join
                app("[\n" + ni + (",\n" + ni).join(map(ebs, o)) + "\n" + ind + "]")
                return
            except TypeError:  # not all strings: the loop below
                pass
        lead = ",\n" + ni
        first = len(out)
        for v in o:
            app(lead)
            if v is None:
                app("null")
            else:
                t = type(v)
                if t is int:
                    app(repr(v))
                elif t is str:
                    app(ebs(v))
                elif t is bool:
                    app("true" if v else "false")
                elif t is dict:
                    if v:
                        enc_dict(v, ni)
                    else:
                        app("{}")
                elif t is list or t is tuple:
                    if v:
                        enc_list(v, ni)
                    else:
                        app("[]")
                else:
                    enc(v, ni)
        if len(out) > first:  # (a list subclass that iterates as empty gets no "[", as in json.dumps)
            out[first] = "[\n" + ni
        app("\n" + ind + "]")

    def enc(o, ind: str) -> None:
        t = type(o)
        if t is str:
            app(ebs(o))
        elif o is None:
            app("null")
        elif o is True:
            app("true")
        elif o is False:
            app("false")
        elif t is int:
            app(int.__repr__(o))
        elif t is float:
            app(_json_float(o))
        elif isinstance(o, str):
            app(ebs(o))
        elif isinstance(o, int):
            app(int.__repr__(o))
        elif isinstance(o, float):
            app(_json_float(o))
        elif isinstance(o, (list, tuple)):
            if o:
                enc_list(o, ind)
            else:
                app("[]")
        elif isinstance(o, dict):
            if o:
                enc_dict(o, ind)
            else:
                app("{}")
        else:
            raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    enc(obj, "")
    return "".join(out)


def _json_float(o: float) -> str:
    if o != o:
        return "NaN"
    if o == INFINITY:
        return "Infinity"
    if o == -INFINITY:
        return "-Infinity"
    return float.__repr__(o)


def _json_key(k) -> str:
    """json.dumps' rules for dict keys that are not strings."""
    if isinstance(k, str):
        return k
    if isinstance(k, float):
        return _json_float(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(k).__name__}")


def flows_csv(ft: FlowTable) -> str:
    buf = io.StringIO()
    w = CsvWriter(buf)  # csv.writer(buf, lineterminator="\n") that quotes a lone CR too
    w.writerow(FLOW_COLUMNS)
    for f in ft.flows:
        d = f.to_dict()
        w.writerow([cell(d[c]) for c in FLOW_COLUMNS])
    return buf.getvalue()


def cell(v) -> str:
    """One CSV cell: empty for None, lower-case booleans, compact JSON for lists and dicts,
    text with a ``'`` before a leading ``= + - @``, tab or CR (:func:`.sanitize.csv_text`)."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))  # starts with [ or {: never a formula
    if isinstance(v, str):
        return csv_text(v)  # text from the capture: no formula injection (numbers are not str, stay numbers)
    return str(v)


RENDERERS = {FlowFormat.table: flows_table, FlowFormat.json: flows_json, FlowFormat.csv: flows_csv}


def render_flows(ft: FlowTable, fmt: FlowFormat | str) -> str:
    renderer = RENDERERS[FlowFormat(fmt)]
    # Rendering builds many short-lived objects and no reference cycles; the cyclic
    # collector's passes over a large flow table would only slow it down.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return renderer(ft)
    finally:
        if gc_was_enabled:
            gc.enable()
