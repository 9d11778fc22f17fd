"""Renderers for ``meshpcap flows``: each writes to a text stream (:func:`write_flows`), the JSON and
CSV ones a chunk of flows at a time, so that a capture of millions of flows is never held as text
or as one record per flow; :func:`render_flows` returns the same text as a string."""

from __future__ import annotations

import csv
import gc
import io
import json
from json.encoder import INFINITY, encode_basestring_ascii

from .formats import FlowFormat
from ..flows.model import FLOW_COLUMNS, FLOWS_SCHEMA, FlowTable, endpoint

CHUNK = 4096  # flows encoded per write


def _stream(flows):
    """The flows one at a time, without keeping them (FlowRecords.stream) where the sequence can."""
    stream = getattr(flows, "stream", None)
    return stream() if stream is not None else iter(flows)


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
    if rows:
        from tabulate import tabulate  # imported here: json and csv output do not need it

        out.append(tabulate(rows, head, tablefmt="simple"))
    else:
        out.append("(no flows)")
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
    buf = io.StringIO()
    write_flows_json(ft, buf.write)
    return buf.getvalue()


def write_flows_json(ft: FlowTable, write) -> None:
    """``json_indent2(ft.to_dict()) + "\n"``, written a chunk of flows at a time (the keys in
    FlowTable.to_dict's order)."""
    write('{\n  "schema": ' + json_indent2(FLOWS_SCHEMA) + ',\n  "capture": ' + json_indent2(ft.capture, "  ")
          + ',\n  "flows": ')
    write_json_list((f.to_dict() for f in _stream(ft.flows)), "  ", write)
    write(',\n  "dns": ')
    write_json_list((e.to_dict() for e in ft.dns), "  ", write)
    write(',\n  "stats": ' + json_indent2(ft.stats, "  ") + "\n}\n")


def write_json_list(items, ind: str, write) -> None:
    """A JSON list of ``items`` (an iterator of dicts) at indent ``ind``, as json.dumps(indent=2) writes it."""
    lead = ",\n" + ind + "  "
    encode = _item_encoder()
    chunk: list[str] = []
    empty = True
    for item in items:
        chunk.append(lead)
        chunk.append(encode(item, ind + "  "))
        if len(chunk) >= 2 * CHUNK:
            if empty:
                chunk[0] = "[\n" + ind + "  "
                empty = False
            write("".join(chunk))
            chunk.clear()
    if chunk and empty:
        chunk[0] = "[\n" + ind + "  "
        empty = False
    if empty:
        write("[]")
    else:
        chunk.append("\n" + ind + "]")
        write("".join(chunk))


def _item_encoder():
    """``encode(obj, indent)``: :func:`json_indent2`'s text, made by orjson where that gives the same
    bytes, which is where orjson's output is printable ASCII: json.dumps escapes every other
    character (DEL and non-ASCII too) and orjson writes them as UTF-8.  orjson also refuses what
    json.dumps takes (integers beyond 64 bits, non-str keys, surrogates): those items, and all
    items without orjson, go through json_indent2.  Measured per flow record: json_indent2
    about 19 us, orjson 3.7 us (json.dumps(indent=2) 46 us)."""
    slow = make_json_indent2()
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; the encoder works without it
        return slow
    dumps, opt, error = orjson.dumps, orjson.OPT_INDENT_2, orjson.JSONEncodeError
    printable = bytes(range(0x20, 0x7F)) + b"\n"

    def encode(obj, indent: str = "") -> str:
        try:
            b = dumps(obj, option=opt)
        except (error, TypeError):
            return slow(obj, indent)
        if not b.isascii() or b.translate(None, printable):
            return slow(obj, indent)
        if indent:
            b = b.replace(b"\n", b"\n" + indent.encode())
        return b.decode("ascii")

    return encode


def json_indent2(obj, indent: str = "") -> str:
    """Exactly ``json.dumps(obj, indent=2)``, about three times faster.

    With an indent, ``json.dumps`` falls back to its pure-Python generator encoder; this
    builds the same text with one list of pieces and the C string escaper.  The values
    that make up almost all of a flow table (None, int, str, bool, empty lists) are
    written inline in the dict and list loops rather than through a call per value, and
    each string key is escaped once per depth, together with the separator before it.
    Everything else (subclasses of str/int/float/list/tuple/dict, non-str keys, floats)
    takes the general path, which follows ``json.encoder._make_iterencode``.

    ``indent``: the indentation of the line ``obj`` starts on (for writing a document in parts)."""
    return make_json_indent2()(obj, indent)


def make_json_indent2():
    """:func:`json_indent2` as a function that keeps its cache of encoded keys from one call to the
    next (for encoding the flows of a document one by one)."""
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

    def encode(obj, indent: str = "") -> str:
        try:
            enc(obj, indent)
            return "".join(out)
        finally:
            out.clear()  # the encoder's functions refer to each other: a cycle, kept small

    return encode


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
    write_flows_csv(ft, buf.write)
    return buf.getvalue()


def write_flows_csv(ft: FlowTable, write) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FLOW_COLUMNS)
    for i, f in enumerate(_stream(ft.flows), start=1):
        d = f.to_dict()
        w.writerow([cell(d[c]) for c in FLOW_COLUMNS])
        if i % CHUNK == 0:
            write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    write(buf.getvalue())


def cell(v) -> str:
    """One CSV cell: empty for None, lower-case booleans, compact JSON for lists and dicts."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def write_flows_table(ft: FlowTable, write) -> None:
    write(flows_table(ft))  # column widths need every row first


RENDERERS = {FlowFormat.table: flows_table, FlowFormat.json: flows_json, FlowFormat.csv: flows_csv}
WRITERS = {FlowFormat.table: write_flows_table, FlowFormat.json: write_flows_json, FlowFormat.csv: write_flows_csv}


def render_flows(ft: FlowTable, fmt: FlowFormat | str) -> str:
    buf = io.StringIO()
    write_flows(ft, fmt, buf.write)
    return buf.getvalue()


def write_flows(ft: FlowTable, fmt: FlowFormat | str, write) -> None:
    """Write the flows in format ``fmt`` through ``write`` (a text stream's ``write``), in pieces."""
    writer = WRITERS[FlowFormat(fmt)]
    # Rendering builds many short-lived objects and no reference cycles; the cyclic
    # collector's passes over a large flow table would only slow it down.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        writer(ft, write)
    finally:
        if gc_was_enabled:
            gc.enable()
