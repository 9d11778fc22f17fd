"""Renderers for ``meshpcap flows``: each writes to a text stream (:func:`write_flows`), the JSON and
CSV ones a chunk of flows at a time, so that a capture of millions of flows is never held as text
or as one record per flow; :func:`render_flows` returns the same text as a string."""

from __future__ import annotations

import functools
import gc
import io
import itertools
import json
import re

from .formats import FlowFormat
from .sanitize import CsvWriter, csv_text, terminal_text
from ..flows.model import FLOW_COLUMNS, FLOWS_SCHEMA, FlowTable, endpoint

CHUNK = 4096  # flows encoded per write
# items per orjson call: its text (a few hundred kB) stays in the CPU's caches; measured at 1M packets on the
# analysis report's 5,300 verdicts, 256 to a call: 32 ms, 4096: 46 ms
ORJSON_CHUNK = 256


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
    buf = io.StringIO()
    write_flows_json(ft, buf.write)
    return buf.getvalue()


def write_flows_json(ft: FlowTable, write) -> None:
    """``json_indent2(ft.to_dict()) + "\n"``, written a chunk of flows at a time (the keys in
    FlowTable.to_dict's order)."""
    write('{\n  "schema": ' + json_indent2(FLOWS_SCHEMA) + ',\n  "capture": ' + json_indent2(ft.capture, "  ")
          + ',\n  "flows": ')
    if hasattr(ft.flows, "plain_chunk"):
        write_json_list_text(_flow_texts(ft.flows, "    "), "  ", write)
    else:
        write_json_list((f.to_dict() for f in _stream(ft.flows)), "  ", write)
    write(',\n  "dns": ')
    write_json_list((e.to_dict() for e in ft.dns), "  ", write)
    write(',\n  "stats": ' + json_indent2(ft.stats, "  ") + "\n}\n")


def write_json_list(items, ind: str, write) -> None:
    """A JSON list of ``items`` (an iterator of dicts without floats, see :func:`joined_json`) at indent
    ``ind``, as json.dumps(indent=2) writes it: :data:`CHUNK` items at a time, each chunk by one orjson call."""
    write_json_list_text(_joined_chunks(items, ind + "  "), ind, write)


def _joined_chunks(items, ind: str):
    """The texts of ``items`` at indent ``ind`` (:func:`joined_or_each`), :data:`ORJSON_CHUNK` items to a text."""
    for part in chunks(items, ORJSON_CHUNK):
        yield joined_or_each(part, ind)


def chunks(items, n: int = CHUNK):
    """``items`` (an iterable) as lists of ``n`` (the last one shorter)."""
    it = iter(items)
    while part := list(itertools.islice(it, n)):
        yield part


def joined_or_each(items: list, ind: str) -> str:
    """``(",\n" + ind).join(json_indent2(x, ind) for x in items)``: by one orjson call (:func:`joined_json`)
    where orjson takes them all, else item by item (:func:`_item_encoder`)."""
    text = joined_json(items, ind)
    if text is None:
        encode = _item_encoder()
        text = (",\n" + ind).join([encode(x, ind) for x in items])
    return text


def _as_dict(obj):
    """orjson's ``default`` for a record: its ``to_dict()`` (what json.dumps is given), else refused."""
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"{type(obj).__name__} is not JSON serializable")
    return to_dict()


def joined_json(items: list, ind: str, native: bool = False) -> str | None:
    """``(",\n" + ind).join(json_indent2(x, ind) for x in items)``, made by one orjson call over the list,
    or None where orjson refuses an item (integers beyond 64 bits, non-str keys, lone surrogates, deep
    nesting).  A record in ``items`` is written as its ``to_dict()``; with ``native``, as orjson writes a
    dataclass, its fields in order (for records of :func:`native_is_to_dict`: no to_dict call).

    For items without floats (orjson writes 1e-07 as 1e-7, NaN as null: :func:`_orjson_indent2` checks).
    orjson's OPT_INDENT_2 lays a list out as json.dumps(indent=2) does; its items, four spaces in (the
    list is a member of a dict), are moved to ``ind``; the text from DEL on, which orjson writes as
    UTF-8, is escaped as json.dumps does (:func:`_ascii_escaped`)."""
    b = _orjson_items(items, native)
    return None if b is None else _moved(b, ind)


_HEAD, _TAIL = b'{\n  "k": [\n    ', b"\n  ]\n}"  # orjson's OPT_INDENT_2 text of {"k": items} around the items


def _orjson_items(items: list, native: bool) -> bytes | None:
    """orjson's OPT_INDENT_2 text of ``{"k": items}`` (the items four spaces in, between :data:`_HEAD` and
    :data:`_TAIL`), or None where it refuses them (see :func:`joined_json`)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; the callers work without it
        return None
    if not items:
        return _HEAD + _TAIL
    opt = orjson.OPT_INDENT_2 if native else orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS
    try:
        return orjson.dumps({"k": items}, default=_as_dict, option=opt)
    except (TypeError, ValueError, OverflowError, RecursionError):  # orjson.JSONEncodeError is a TypeError
        return None


def _moved(b: bytes, ind: str) -> str:
    """The items of :func:`_orjson_items`' text ``b`` moved to ``ind`` and escaped as json.dumps escapes
    them (sliced out last: one copy fewer of a text of megabytes)."""
    start = len(_HEAD)
    if ind != "    ":
        b = b.replace(b"\n    ", b"\n" + ind.encode())
        start += len(ind) - 4
    items = memoryview(b)[start:len(b) - len(_TAIL)]
    if b.isascii() and b"\x7f" not in b:
        return str(items, "ascii")
    return _ascii_escaped(str(items, "utf-8"))


def merged_json(records: list, tails: list, key: str, ind: str) -> str | None:
    """:func:`joined_json` of ``{**r.to_dict(), **t}`` for each record ``r`` of ``records`` (of
    :func:`native_is_to_dict`) and dict ``t`` (or record orjson writes as that dict) of ``tails`` (whose first
    key is ``key``, a key no record has), made by one orjson call over the records and tails in turn, or None
    where orjson refuses one.

    In that list's text, where a record closes and its tail opens (a line of four spaces and ``},``,
    one of four and ``{``, one of six and ``key``) the two are joined by a comma: one replacement per
    pair, counted by the length it takes off (else None)."""
    if len(records) != len(tails):
        raise ValueError("merged_json: one tail per record")
    flat: list = [None] * (2 * len(records))
    flat[::2], flat[1::2] = records, tails
    b = _orjson_items(flat, native=True)
    if b is None:
        return None
    k = json.dumps(key).encode()
    seam, joined = b"\n    },\n    {\n      " + k + b":", b",\n      " + k + b":"
    size = len(b)
    b = b.replace(seam, joined)
    if size - len(b) != len(records) * (len(seam) - len(joined)):
        return None
    return _moved(b, ind)


def split_texts(texts, ind: str):
    """The texts of dicts at indent ``ind`` that each of ``texts`` joins by ``",\n" + ind`` (as
    :func:`joined_json` does): a raw newline is only ever layout, and only a dict's first line is
    ``ind`` then ``{``."""
    sep = ",\n" + ind + "{"
    for text in texts:
        assert text.startswith("{"), "split_texts: not dicts"
        parts = text.split(sep)
        yield parts[0]
        for p in parts[1:]:
            yield "{" + p


def write_json_list_text(chunks, ind: str, write) -> None:
    """:func:`write_json_list` of items already encoded: ``chunks`` yields texts of one or more items at
    indent ``ind + "  "``, joined by ``",\n" + ind + "  "`` (empty texts are skipped)."""
    lead = ",\n" + ind + "  "
    first = True
    for text in chunks:
        if not text:
            continue
        write("[\n" + ind + "  " if first else lead)  # apart: the text may be megabytes
        write(text)
        first = False
    write("[]" if first else "\n" + ind + "]")


# -- plain flows, written from the columns (FlowRecords.plain_chunk) ------------------------------------------
# A flow that is no more than its counters (a scan or a busy gateway has millions) is written by filling a
# template made once from the slow path's own output: json_indent2 of Flow.to_dict (or cell() of it, for CSV)
# with a marker in each field of PLAIN_FIELDS.  The addresses, transports, states and orientations of such a
# flow are ASCII letters, digits, "." ":" and "-": text that neither JSON nor CSV escapes or quotes, nor
# csv_text marks (a test compares both paths on varied tables).
def _plain_flow():
    from ..flows.model import Flow

    return Flow(0, "", 0, "", None, "", None, "", 0, 0, 0, 0, 0, 0, 0)


def _mark(i: int) -> str:
    return f"QQ{i}QQ"  # text that JSON, CSV and csv_text leave as it is


class Template:
    """A text with named slots: ``literals[0] + value[names[0]] + literals[1] + ... + literals[-1]``.

    :meth:`fill` writes a whole chunk of rows with one ``str.join`` over a list laid out by slice
    assignments: no string, tuple or call per row."""

    __slots__ = ("literals", "names")

    def __init__(self, literals: list[str], names: list[str]) -> None:
        assert len(literals) == len(names) + 1
        self.literals, self.names = literals, names

    def fill(self, cells: dict[str, list], n: int, special: dict[int, str], sep: str = "") -> str:
        """Rows 0..n-1 filled from ``cells`` (columns of text by slot name), ``sep`` between rows;
        row ``j`` is ``special[j]`` instead where given."""
        if n == 0:
            return ""
        k = len(self.names)
        stride = 2 * k + 1
        out: list = [None] * (stride * n)
        lits = self.literals
        for i in range(k):
            out[2 * i::stride] = [lits[i]] * n
            out[2 * i + 1::stride] = cells[self.names[i]]
        out[2 * k::stride] = [lits[k] + sep] * n
        blank = [""] * (stride - 2)
        for j, text in special.items():
            out[j * stride:(j + 1) * stride] = [text, *blank, sep]
        out[-1] = out[-1][:len(out[-1]) - len(sep)] if sep else out[-1]
        return "".join(out)


# the PLAIN_FIELDS that hold text (their JSON quotes stay in the template: the cells are the records' own str)
TEXT_FIELDS = ("transport", "client", "server", "state", "orientation", "destination")


def plain_template(d: dict, render, more: tuple[str, ...] = ()) -> Template:
    """``render(d)`` with a slot in place of each field of PLAIN_FIELDS and ``more`` (the quotes of a JSON
    string stay around the slot of a :data:`TEXT_FIELDS` field and go with any other's; ``render`` must
    keep ``d``'s key order)."""
    from ..flows.records import PLAIN_FIELDS

    d = dict(d)
    marked = PLAIN_FIELDS + more
    for i, name in enumerate(marked):
        d[name] = _mark(i)
    text = render(d)
    names = [name for name in d if name in marked]
    literals = []
    for name in names:
        quoted = '"' + d[name] + '"'
        before, found, text = text.partition(quoted if quoted in text and name not in TEXT_FIELDS else d[name])
        assert found and d[name] not in before
        literals.append(before)
    literals.append(text)
    return Template(literals, names)


class _Texts(dict):
    """value -> its text by ``make`` (memoised: few distinct values, e.g. interface masks)."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key):
        t = self[key] = self.make(key)
        return t


_JSON_BOOL = ("false", "true")  # by False/True (CSV's cell() writes them the same)
_INT_FIELDS = ("id", "ip_version", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "first_ns", "last_ns",
               "ip_fragments")


def json_cells(chunk, records, ind: str) -> dict[str, list]:
    """The columns of a :class:`~meshpcap.flows.records.PlainChunk` as JSON texts (the text fields as
    they are: the template quotes them, and none of them needs escaping, see above)."""
    return _cells(chunk, _JSON_PORTS, lambda mask: json_indent2(list(records.interfaces_of(mask)), ind + "  "))


def _cells(chunk, ports: dict, interfaces_text) -> dict[str, list]:
    """The columns of ``chunk`` as the texts a template takes: numbers and booleans as JSON and CSV both
    write them, ports through ``ports`` (None: null or empty), interface masks through ``interfaces_text``."""
    out = dict(chunk.columns)
    made: dict[int, list[str]] = {}  # by the column list's id: last_ns is first_ns' list when no flow lasts
    for name in _INT_FIELDS:
        col = out[name]  # chunk.columns keeps it alive: its id stays its own
        texts = made.get(id(col))
        if texts is None:
            texts = made[id(col)] = int_texts(col)
        out[name] = texts
    out["client_port"] = list(map(ports.__getitem__, out["client_port"]))
    out["server_port"] = list(map(ports.__getitem__, out["server_port"]))
    out["encapsulated"] = list(map(_JSON_BOOL.__getitem__, out["encapsulated"]))
    out["interfaces"] = list(map(_Texts(interfaces_text).__getitem__, out["interfaces"]))
    return out


_SMALL_INTS = _Texts(str)  # 0..65535 -> text, made as met (not all 65,536 at import: 12 MB, 15 ms)


def int_texts(values: list[int]) -> list[str]:
    """``list(map(str, values))``, from a table when they are all in 0..65535 (counters, versions)."""
    if values and 0 <= min(values) and max(values) < 65536:
        return list(map(_SMALL_INTS.__getitem__, values))
    return list(map(str, values))


_JSON_PORTS, _CSV_PORTS = _Texts(str), _Texts(str)  # port number (or None) -> its text
_JSON_PORTS[None], _CSV_PORTS[None] = "null", ""


def _flow_texts(records, ind: str, chunk: int = CHUNK):
    """The JSON texts of ``records`` (a FlowRecords) a chunk at a time, items at indent ``ind`` joined as
    :func:`write_json_list_text` wants them."""
    template = plain_template(_plain_flow().to_dict(), lambda d: json_indent2(d, ind))
    sep = ",\n" + ind
    for lo in range(0, len(records), chunk):
        c = records.plain_chunk(lo, min(lo + chunk, len(records)))
        texts = map(flows_json_text, chunks(c.special.values(), ORJSON_CHUNK), itertools.repeat(ind))
        if len(c.special) == len(c):  # no plain flow
            yield from texts
            continue
        special = dict(zip(c.special, split_texts(texts, ind), strict=True))
        yield template.fill(json_cells(c, records, ind), len(c), special, sep)


def flows_json_text(flows: list, ind: str) -> str:
    """``json_indent2(f.to_dict(), ind)`` of each of ``flows``, joined by ``",\n" + ind``."""
    text = joined_json(flows, ind, native=native_is_to_dict())
    return joined_or_each([f.to_dict() for f in flows], ind) if text is None else text


@functools.cache
def native_is_to_dict() -> bool:
    """Does orjson write a Flow as its ``to_dict()`` (its fields in order, its tuples as lists, its ICMP
    errors and STUN summary as theirs)?  Asked of a flow with every field set; a test asks it of many."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency
        return False
    from ..flows.model import Flow, IcmpError, StunSummary

    stun = StunSummary(1, 2, 3, 4, 5, ("Allocate request",), (401,), ("192.0.2.1:1",), ("192.0.2.2:2",), "r", True)
    icmp = (IcmpError(3, 13, "192.0.2.254", 7, "d", "client"),)
    f = Flow(1, "tcp", 4, "10.0.0.1", 1, "10.0.0.2", 2, "s", 3, 4, 5, 6, 7, 8, 9, icmp, "server", 60, "syn", True,
             1, "sni", ("h2",), False, "v1", ("a.example",), "h", "c:443", 200, "alert", "server", "TLS 1.3",
             "issuer", "subject", stun, "name", "sni", "192.0.2.3", (0, 1))
    return orjson.dumps(f) == orjson.dumps(f.to_dict())


def _item_encoder():
    """``encode(obj, indent)``: :func:`json_indent2`'s text, made by orjson where that gives the same
    bytes, which is where orjson's output is printable ASCII: json.dumps escapes every other
    character (DEL and non-ASCII too) and orjson writes them as UTF-8.  orjson also refuses what
    json.dumps takes (integers beyond 64 bits, non-str keys, surrogates): those items, and all
    items without orjson, go through json_indent2.  Measured per flow record (the largest of a
    sample): orjson 3.7 us, json.dumps(indent=2) 46 us.  Flow and DNS records hold no floats
    (orjson writes 1e-07 as 1e-7); a new float field would need the slow path."""
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
    """Exactly ``json.dumps(obj, indent=2)``, its lines after the first indented by ``indent`` (the
    indentation of the line ``obj`` starts on, for writing a document in parts; exact, since
    json.dumps escapes every newline inside strings).

    This module had a re-implementation of json.dumps(indent=2), three times faster than it.
    Measured again (issue 10 item 6) on 200,000 flow records, writing the whole document, best of
    3 alternating runs on the shared machine: orjson 3.9 s, the re-implementation 5.5 s,
    json.dumps 11.3 s.  orjson now writes every flow and DNS record whose bytes it gets right
    (:func:`_item_encoder`); what is left for this function (the capture and stats objects,
    the head of the analysis report, the rare record with non-ASCII text) is within noise of a
    whole run, so the 134 lines went."""
    text = json.dumps(obj, indent=2)
    return text.replace("\n", "\n" + indent) if indent else text


_COMPACT = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(obj, separators=(",", ":"))


def _orjson_indent2(obj) -> str | None:
    """``json.dumps(obj, indent=2)``'s text made by orjson, or None where it may differ: where orjson's
    compact text is not json.dumps's compact text (its C encoder, about three times faster than its
    indent=2 one), or either refuses ``obj``.  When the compact texts agree both hold the same tokens,
    and orjson's OPT_INDENT_2 lays them out as json.dumps(indent=2) does.  Non-ASCII text (and DEL),
    which orjson writes as it is, is escaped as json.dumps escapes it (:func:`_ascii_escaped`) before
    the comparison.  What orjson writes its own way: a float such as 1e-07 (1e-7), NaN (null); what it
    refuses: integers beyond 64 bits, non-str keys, lone surrogates."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; the callers work without it
        return None
    try:
        compact = orjson.dumps(obj)
        plain = compact.isascii() and b"\x7f" not in compact
        if _COMPACT(obj) != (compact.decode("ascii") if plain else _ascii_escaped(compact.decode())):
            return None
        text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
        return text if plain else _ascii_escaped(text)
    except (TypeError, ValueError, OverflowError, RecursionError):  # json_indent2 says what json.dumps says
        return None


# floats on both sides of where repr turns to exponents (1e16) and at the ends of the range: the orjson
# installed must write each as json.dumps does for _built_indent2 to rely on it (checked once)
_FLOAT_PROBES = (0.1, -0.0, 1.0, 123.456, 0.0001, 0.001234, 1e15, 9999999999999998.0, 1e16, 1.5e17, 2.0**60, 1e22,
                 1e300, 1.7976931348623157e308, -2.5e-3)
_FLOATS_AS_REPR: list[bool] = []


def _floats_as_repr(orjson) -> bool:
    """Does this orjson write the probe floats as json.dumps does (the rule _built_indent2 relies on)?"""
    if not _FLOATS_AS_REPR:
        _FLOATS_AS_REPR.append(all(orjson.dumps(x) == json.dumps(x).encode() for x in _FLOAT_PROBES))
    return _FLOATS_AS_REPR[0]


def _built_indent2(obj) -> str | None:
    """:func:`_orjson_indent2`'s text for ``obj`` built of dict, list, str, int, float, bool and None (no
    subclass that iterates its own way, as a to_dict builds it), vouched for without json.dumps: orjson
    writes a finite float as json.dumps does (``repr``) except from 0 to 1e-4, where its text holds ``e-``
    (1e-7) or ``0.0000`` (0.00001; json.dumps: 1e-05); orjson.loads of its text equals ``obj`` only where
    no float is NaN or infinite (orjson's null) and no tuple stands for a list.  Measured on the streams of
    the 1M-packet benchmark (1,000, 2 MB): 4 ms against 20 ms for json.dumps' compact text."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency; the callers work without it
        return None
    if not _floats_as_repr(orjson):
        return None
    try:
        b = orjson.dumps(obj, option=orjson.OPT_INDENT_2)
    except (TypeError, ValueError, OverflowError, RecursionError):
        return None
    if b"e-" in b or b"0.0000" in b or orjson.loads(b) != obj:
        return None
    return b.decode("ascii") if b.isascii() and b"\x7f" not in b else _ascii_escaped(b.decode())


# what json.dumps (ensure_ascii) escapes beyond the controls: every character from U+007F on, written as the
# complement of U+0000-U+007E (the same set; the range itself took the regex compiler 4 ms at every start)
_ESCAPED = re.compile("[^\x00-\x7e]")


def _escape(m) -> str:
    c = ord(m.group())
    if c < 0x10000:
        return "\\u%04x" % c  # lower-case hex, as json.dumps writes it
    c -= 0x10000  # a UTF-16 surrogate pair (RFC 8259 section 7)
    return "\\u%04x\\u%04x" % (0xD800 | c >> 10, 0xDC00 | c & 0x3FF)


def _ascii_escaped(text: str) -> str:
    """``text`` (JSON) with every character from DEL on written as json.dumps writes it: ``\\uXXXX``."""
    return _ESCAPED.sub(_escape, text)


def json_indent2_checked(obj, indent: str = "") -> str:
    """:func:`json_indent2`'s text, made by orjson when it is sure to be the same (:func:`_orjson_indent2`).
    For the analysis report's quality and streams sections (floats by the thousand); measured on the
    1M-packet benchmark's 2.2 MB of quality and streams: 65 ms through json_indent2, 27 ms here."""
    return _checked(obj, indent, 8)


def _checked(obj, indent: str, depth: int) -> str:
    """:func:`json_indent2_checked`; where orjson is not sure to write the same, a dict's members (str
    keys) and a list's items are each tried again, ``depth`` levels down: one accented text in an
    analysis report's checklist leaves its findings' flow ids by the 10,000 to orjson."""
    text = _orjson_indent2(obj)
    if text is not None:
        return text.replace("\n", "\n" + indent) if indent else text
    inner = indent + "  "
    sep = ",\n" + inner
    if depth and isinstance(obj, dict) and obj and all(isinstance(k, str) for k in obj):
        return ("{\n" + inner + sep.join(json_indent2(k) + ": " + _checked(v, inner, depth - 1) for k, v in obj.items())
                + "\n" + indent + "}")
    if depth and isinstance(obj, (list, tuple)) and obj:
        return "[\n" + inner + sep.join(_checked(v, inner, depth - 1) for v in obj) + "\n" + indent + "]"
    return json_indent2(obj, indent)


def write_json_list_checked(items, ind: str, write, chunk: int = 256, built: bool = False) -> None:
    """:func:`write_json_list`'s text (json.dumps(list(items), indent=2) at indent ``ind``) for items
    holding floats: ``chunk`` items at a time, each chunk written by one orjson call where
    :func:`_orjson_indent2` vouches for it (or :func:`_built_indent2`, for items ``built`` as a to_dict
    builds them), else item by item through json_indent2_checked."""
    it = iter(items)
    first = True
    while True:
        part = list(itertools.islice(it, chunk))
        if not part:
            break
        text = built and _built_indent2(part) or _orjson_indent2(part)
        if text is not None:
            # "[\n  a,\n  b\n]" at indent ind, without its brackets: "\n" + ind + "  a,..." + "b"
            text = text.replace("\n", "\n" + ind)[1:-len(ind) - 2]
        else:
            lead = ",\n" + ind + "  "
            text = "\n" + ind + "  " + lead.join(json_indent2_checked(x, ind + "  ") for x in part)
        write(("[" if first else ",") + text)
        first = False
    write("[]" if first else "\n" + ind + "]")


def make_json_indent2():
    """:func:`json_indent2` as a function (the slow path of :func:`_item_encoder`)."""
    return json_indent2


def flows_csv(ft: FlowTable) -> str:
    buf = io.StringIO()
    write_flows_csv(ft, buf.write)
    return buf.getvalue()


def write_flows_csv(ft: FlowTable, write) -> None:
    buf = io.StringIO()
    w = CsvWriter(buf)  # csv.writer(buf, lineterminator="\n") that quotes a lone CR too
    w.writerow(FLOW_COLUMNS)
    if hasattr(ft.flows, "plain_chunk"):
        write(buf.getvalue())
        for text in _flow_csv_lines(ft.flows):
            write(text)
        return
    for i, f in enumerate(_stream(ft.flows), start=1):
        d = f.to_dict()
        w.writerow([cell(d[c]) for c in FLOW_COLUMNS])
        if i % CHUNK == 0:
            write(buf.getvalue())
            buf.seek(0)
            buf.truncate()
    write(buf.getvalue())


def csv_line(row) -> str:
    """One CSV line (ending in a newline) as :class:`CsvWriter` writes ``row``."""
    buf = io.StringIO()
    CsvWriter(buf).writerow(row)
    return buf.getvalue()


def csv_cells(chunk, records) -> dict[str, list]:
    """The columns of a :class:`~meshpcap.flows.records.PlainChunk` as CSV cells (quoted where needed)."""
    return _cells(chunk, _CSV_PORTS, lambda mask: csv_line([cell(list(records.interfaces_of(mask)))])[:-1])


def _flow_csv_lines(records, chunk: int = CHUNK):
    """The CSV lines of ``records`` (a FlowRecords) a chunk at a time."""
    template = plain_template(_plain_flow().to_dict(), lambda d: csv_line([cell(d[c]) for c in FLOW_COLUMNS]))
    for lo in range(0, len(records), chunk):
        c = records.plain_chunk(lo, min(lo + chunk, len(records)))
        special = {}
        for j, f in c.special.items():
            d = f.to_dict()
            special[j] = csv_line([cell(d[col]) for col in FLOW_COLUMNS])
        yield template.fill(csv_cells(c, records), len(c), special)


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
