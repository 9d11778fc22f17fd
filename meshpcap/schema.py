"""Every column of meshpcap's tables, declared once: name, pandas dtype, Arrow type and meaning.

The DataFrames (``FlowTable.to_dataframe``/``dns_dataframe``, ``Report.flows``/``findings``/
``checklist``, ``BatchReport.captures``/``flows``/``findings``) and the Parquet files of
``meshpcap batch -o audit.parquet`` are all derived from these declarations, so one capture,
an empty capture and a ``pd.concat`` over a thousand captures have the same dtypes.

Missing values: nullable scalar columns hold ``pd.NA`` (``NaT`` in time columns); list and
struct columns hold a list/dict or ``None``.  Integers are ``int64`` where a value is always
present and the nullable ``Int64`` where it may be missing; strings are ``string`` (pandas'
``StringDtype`` with Python storage, whatever pyarrow is installed); times are integer
nanoseconds since the epoch (``*_ns``) beside ``datetime64[ns, UTC]`` (``first_seen``,
``last_seen``) and a ``timedelta64[ns]`` ``duration``.

This module imports no pipeline stage: flows, report and batch all import it.  A column never
changes meaning without a new :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from meshpcap._dataclass import dataclass

SCHEMA_VERSION = "meshpcap.tables/1"


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, pandas dtype, Arrow type (a short spelling, see :func:`arrow_type`)
    and what it means."""

    name: str
    pandas: str  # int64 | Int64 | float64 | bool | boolean | string | datetime | timedelta | object
    arrow: str  # int64 | int32 | float64 | bool | string | dict | timestamp | duration | list<string> | list<int64> | json
    meaning: str


def _c(name: str, pandas: str, arrow: str, meaning: str) -> Column:
    return Column(name, pandas, arrow, meaning)


_TIMES = (
    _c("first_seen", "datetime", "timestamp", "first_ns as a UTC time"),
    _c("last_seen", "datetime", "timestamp", "last_ns as a UTC time"),
    _c("duration", "timedelta", "duration", "last_seen - first_seen"),
)

FLOW_FIELDS: tuple[Column, ...] = (
    _c("id", "int64", "int64", "flow number within its capture (0-based, in order of first packet)"),
    _c("transport", "string", "dict", "tcp | udp | icmp | icmpv6 | ip-<n>"),
    _c("ip_version", "int64", "int64", "4 or 6"),
    _c("client", "string", "string", "client address (the side that opened the flow)"),
    _c("client_port", "Int64", "int64", "client port; missing for transports without ports"),
    _c("server", "string", "string", "server address"),
    _c("server_port", "Int64", "int64", "server port; missing for transports without ports"),
    _c("state", "string", "dict", "established | rejected | no-answer | reset | closed | midstream | one-way | "
       "bidirectional"),
    _c("syn_count", "int64", "int64", "TCP SYNs the client sent (retransmissions counted)"),
    _c("packets_c2s", "int64", "int64", "packets client -> server"),
    _c("packets_s2c", "int64", "int64", "packets server -> client"),
    _c("bytes_c2s", "int64", "int64", "IP-layer bytes client -> server"),
    _c("bytes_s2c", "int64", "int64", "IP-layer bytes server -> client"),
    _c("first_ns", "int64", "int64", "time of the first packet, integer ns since the epoch (UTC)"),
    _c("last_ns", "int64", "int64", "time of the last packet, integer ns since the epoch (UTC)"),
    *_TIMES,
    _c("community_id", "string", "string", "Community ID v1 of the 5-tuple (seed 0), joins with Zeek/Suricata logs"),
    _c("icmp_errors", "object", "json", "ICMP errors that quoted the flow: list of {type, code, sender, ns, "
       "description, toward}"),
    _c("rst_from", "string", "dict", "which side sent the first TCP RST: client | server"),
    _c("rst_ttl", "Int64", "int64", "TTL / hop limit of that RST"),
    _c("orientation", "string", "dict", "how the client was chosen: syn | syn-ack | ports | first-packet"),
    _c("encapsulated", "bool", "bool", "the flow was inside GRE/ERSPAN/VXLAN/Geneve"),
    _c("ip_fragments", "int64", "int64", "packets that were non-final IP fragments"),
    _c("sni", "string", "string", "TLS/QUIC server name from the ClientHello"),
    _c("alpn", "object", "list<string>", "ALPN protocols offered; None when no ClientHello was read"),
    _c("ech", "boolean", "bool", "the ClientHello offered Encrypted Client Hello"),
    _c("quic_version", "string", "dict", "QUIC version of the client Initial"),
    _c("dns_names", "object", "list<string>", "names that resolved to the server before the flow began"),
    _c("http_host", "string", "string", "HTTP Host header"),
    _c("connect_target", "string", "string", "HTTP CONNECT target"),
    _c("connect_status", "Int64", "int64", "status of the CONNECT's final response"),
    _c("tls_alert", "string", "string", "TLS alert right after the ClientHello"),
    _c("tls_alert_from", "string", "dict", "which side sent that alert"),
    _c("tls_version", "string", "dict", "negotiated TLS version"),
    _c("cert_issuer", "string", "string", "issuer of the server certificate (TLS <= 1.2)"),
    _c("cert_subject", "string", "string", "subject of the server certificate"),
    _c("stun", "object", "json", "STUN/TURN summary: {requests, indications, successes, errors, channel_data, "
       "methods, error_codes, mapped, relayed, realm, ms_turn}"),
    _c("name", "string", "string", "the flow's best name"),
    _c("name_source", "string", "dict", "where the name came from: sni | connect | http | dns | ..."),
    _c("sni_literal", "string", "string", "an IP address literal the client put in the SNI field (not a name, "
       "RFC 6066 section 3; kept as evidence)"),
    _c("interfaces", "object", "list<int64>", "capture interfaces (indices into the capture's interfaces) its "
       "packets came on"),
)

VERDICT_FIELDS: tuple[Column, ...] = (
    _c("rule", "string", "dict", "id of the rule the flow falls under (the primary one, for display)"),
    _c("rules", "object", "list<string>", "every rule the flow satisfies by name or address, primary first"),
    _c("verdict", "string", "dict", "allowed | blocked | unexpected | unrelated"),
    _c("blocked_by", "string", "dict", "how it was blocked: no-answer | rejected | icmp-unreachable | tls-alert | "
       "proxy-denied | dns-failure | tls-intercepted | relay-refused"),
    _c("detail", "string", "string", "one sentence: what the evidence shows"),
    _c("confidence", "string", "dict", "high | low (the capture itself cannot show the outcome)"),
    _c("matched_by", "string", "dict", "name | address | service-tag | port"),
    _c("destination", "string", "string", "the name or address the verdict is about"),
    _c("tag_verified", "boolean", "bool", "False: AzureCloud judged on transport and port alone"),
)

REPORT_FLOW_FIELDS: tuple[Column, ...] = FLOW_FIELDS + VERDICT_FIELDS

DNS_FIELDS: tuple[Column, ...] = (
    _c("ns", "int64", "int64", "time of the query (or of the answer when the query was not captured), ns"),
    _c("time", "datetime", "timestamp", "ns as a UTC time"),
    _c("client", "string", "string", "address that asked"),
    _c("server", "string", "string", "resolver address"),
    _c("transport", "string", "dict", "udp | tcp"),
    _c("qname", "string", "string", "name asked for (lower-case, no trailing dot)"),
    _c("qtype", "string", "dict", "A | AAAA | CNAME | ..."),
    _c("rcode", "string", "dict", "NOERROR | NXDOMAIN | SERVFAIL | ...; missing: no answer seen"),
    _c("answers", "object", "list<string>", "addresses and CNAME targets in answer order"),
    _c("sinkhole", "bool", "bool", "the answer was a sinkhole address (0.0.0.0, ::, 127.x)"),
    _c("flow_id", "Int64", "int64", "id of the flow that carried the query"),
)

FINDING_FIELDS: tuple[Column, ...] = (
    _c("id", "string", "string", "finding id within its report (F1, F2, ...)"),
    _c("kind", "string", "dict", "blocked | missing | unexpected | degraded"),
    _c("severity", "string", "dict", "error | warning | info"),
    _c("rule", "string", "dict", "id of the rule it is about"),
    _c("source", "string", "string", "where the rule comes from (document, row)"),
    _c("title", "string", "string", "one line"),
    _c("detail", "string", "string", "what the evidence shows"),
    _c("fix", "string", "string", "what to change"),
    _c("flow_ids", "object", "list<int64>", "ids of the flows it rests on"),
    _c("blocked_by", "string", "dict", "how the flows were blocked (blocked findings)"),
    _c("destination", "string", "string", "the name or address it is about"),
    _c("clients", "object", "list<string>", "client addresses of the flows it rests on"),
    _c("first_ns", "Int64", "int64", "first packet of the failing attempts, ns"),
    _c("last_ns", "Int64", "int64", "last packet of the failing attempts, ns"),
    *_TIMES,
)

CHECKLIST_FIELDS: tuple[Column, ...] = (
    _c("rule", "string", "dict", "rule id"),
    _c("description", "string", "string", "what the rule requires"),
    _c("destination", "string", "string", "its destinations"),
    _c("ports", "string", "string", "its transports and ports"),
    _c("requirement", "string", "dict", "required | optional ..."),
    _c("status", "string", "dict", "ok | blocked | missing | unexpected | not seen"),
    _c("flows", "int64", "int64", "flows that fell under the rule"),
    _c("source", "string", "string", "where the rule comes from"),
)

FINDING_KINDS = ("blocked", "missing", "unexpected", "degraded")
BATCH_VERDICTS = ("pass", "fail", "inconclusive", "error")

CAPTURE_FIELDS: tuple[Column, ...] = (
    _c("capture", "string", "string", "the capture's path as given (the key of the flows and findings tables)"),
    _c("file_size", "Int64", "int64", "file size in bytes (not `size`: that is a DataFrame attribute)"),
    _c("sha256", "string", "string", "SHA-256 of the file's bytes (hex)"),
    _c("format", "string", "dict", "pcap | pcapng"),
    _c("compression", "string", "dict", "gzip | zstd; missing: none"),
    _c("first_ns", "Int64", "int64", "first packet time, ns"),
    _c("last_ns", "Int64", "int64", "last packet time, ns"),
    *_TIMES,
    _c("packets", "Int64", "int64", "packets in the capture"),
    _c("flows", "Int64", "int64", "flows in the capture"),
    _c("verdict", "string", "dict", "pass | fail | inconclusive | error"),
    *(_c(k, "Int64", "int64", f"findings of kind {k}") for k in FINDING_KINDS),
    _c("errors", "Int64", "int64", "findings of severity error"),
    _c("warnings", "Int64", "int64", "capture-quality warnings"),
    _c("profile", "string", "dict", "profile id judged against"),
    _c("profile_date", "string", "dict", "the profile's date (ISO)"),
    _c("service_tags_date", "string", "dict", "date of the service-tag snapshot (ISO); missing: none used"),
    _c("service_tags_change_number", "Int64", "int64", "changeNumber of the snapshot"),
    _c("m365_endpoints", "string", "dict", "the Microsoft 365 endpoints file/version used; missing: the shipped rows"),
    _c("error", "string", "string", "why the capture could not be audited (verdict error)"),
    _c("seconds", "float64", "double", "wall time of the audit of this capture"),
    _c("cached", "bool", "bool", "the result was reused from the batch cache (same bytes, same options)"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "flows": FLOW_FIELDS,
    "report_flows": REPORT_FLOW_FIELDS,
    "dns": DNS_FIELDS,
    "findings": FINDING_FIELDS,
    "checklist": CHECKLIST_FIELDS,
    "captures": CAPTURE_FIELDS,
}

# the per-capture tables of a batch carry this key first
CAPTURE_KEY = _c("capture", "string", "string", "the capture's path (captures.capture)")


def columns(table: str | Sequence[Column]) -> tuple[Column, ...]:
    return TABLES[table] if isinstance(table, str) else tuple(table)


def names(table: str | Sequence[Column]) -> list[str]:
    return [c.name for c in columns(table)]


def keyed(table: str | Sequence[Column]) -> tuple[Column, ...]:
    """``table``'s columns with the ``capture`` key first (the batch's flows and findings)."""
    return (CAPTURE_KEY,) + columns(table)


_DERIVED = {"first_seen": "first_ns", "last_seen": "last_ns", "time": "ns"}


def pandas_dtype(col: Column):
    import pandas as pd

    if col.pandas == "string":
        return pd.StringDtype("python")
    if col.pandas == "datetime":
        return pd.DatetimeTZDtype("ns", "UTC")
    if col.pandas == "timedelta":
        return "timedelta64[ns]"
    return col.pandas


def dtypes(table: str | Sequence[Column]) -> dict[str, Any]:
    return {c.name: pandas_dtype(c) for c in columns(table)}


def _series(col: Column, values: list, index=None):
    import pandas as pd

    kind = col.pandas
    if kind == "object":
        return pd.Series(values, dtype=object, index=index)
    if kind == "string":
        return pd.Series(pd.array([None if v is None else str(v) for v in values], dtype=pandas_dtype(col)),
                         index=index)
    if kind in ("Int64", "boolean", "float64"):
        return pd.Series(pd.array(values, dtype=kind), index=index)
    return pd.Series(values, dtype=kind, index=index)


def _datetimes(src):
    """UTC datetimes from integer ns (int64, or Int64 with NA -> NaT), exact to the nanosecond."""
    import numpy as np
    import pandas as pd

    if src.dtype == "int64":
        values = src.to_numpy()
        missing = None
    else:
        missing = src.isna().to_numpy()
        values = src.to_numpy(dtype="int64", na_value=0)
    out = pd.Series(pd.to_datetime(values.astype(np.int64), unit="ns", utc=True), index=src.index)
    if missing is not None and missing.any():
        out[missing] = pd.NaT
    return out.astype(pd.DatetimeTZDtype("ns", "UTC"))


def frame(table: str | Sequence[Column], rows: Iterable[Mapping[str, Any]]):
    """A DataFrame of ``table``'s columns, in order and with their dtypes, from dict rows.

    Keys a row lacks are missing values (so a field another branch adds later is tolerated);
    the time columns are derived from the integer ns columns.
    """
    import pandas as pd

    cols = columns(table)
    rows = rows if isinstance(rows, list) else list(rows)
    data = {}
    for col in cols:
        if col.pandas in ("datetime", "timedelta"):
            continue
        name = col.name
        data[name] = _series(col, [r.get(name) for r in rows])
    for col in cols:
        if col.pandas == "datetime":
            data[col.name] = _datetimes(data[_DERIVED[col.name]])
        elif col.pandas == "timedelta":
            data[col.name] = (data["last_seen"] - data["first_seen"]).astype("timedelta64[ns]")
    return pd.DataFrame({c.name: data[c.name] for c in cols})


def conform(table: str | Sequence[Column], df):
    """``df`` with exactly ``table``'s columns and dtypes (missing columns added as missing values)."""
    import pandas as pd

    cols = columns(table)
    out = {}
    for col in cols:
        if col.name in df.columns:
            s = df[col.name]
            want = object if col.pandas == "object" else pandas_dtype(col)
            out[col.name] = s if s.dtype == want else s.astype(want)
        else:
            out[col.name] = _series(col, [None] * len(df), index=df.index)
    return pd.DataFrame(out, index=df.index)


def empty(table: str | Sequence[Column]):
    return frame(table, [])


# -- Arrow ---------------------------------------------------------------------------------------

def arrow_type(col: Column, dictionaries: bool = True):
    """The pyarrow type of a column (pyarrow is needed only here); ``dictionaries=False`` spells the
    dictionary-encoded strings as plain strings (for engines that take no dictionaries)."""
    import pyarrow as pa

    if col.arrow == "dict" and not dictionaries:
        return pa.string()
    return {
        "int64": pa.int64(),
        "int32": pa.int32(),
        "float64": pa.float64(),
        "double": pa.float64(),
        "bool": pa.bool_(),
        "string": pa.string(),
        "dict": pa.dictionary(pa.int32(), pa.string()),
        "timestamp": pa.timestamp("ns", tz="UTC"),
        "duration": pa.duration("ns"),
        "list<string>": pa.list_(pa.string()),
        "list<int64>": pa.list_(pa.int64()),
        "json": pa.string(),  # nested records as JSON text: every engine reads it, none guesses a struct
    }[col.arrow]


def arrow_schema(table: str | Sequence[Column], metadata: Mapping[str, str] | None = None,
                 dictionaries: bool = True):
    import pyarrow as pa

    cols = columns(table)
    fields = [pa.field(c.name, arrow_type(c, dictionaries), nullable=c.pandas not in ("int64", "bool"),
                       metadata={"meaning": c.meaning}) for c in cols]
    return pa.schema(fields, metadata=dict(metadata or {}))


def to_arrow(table: str | Sequence[Column], df, metadata: Mapping[str, str] | None = None,
             dictionaries: bool = True):
    """A pyarrow Table of ``df`` (a frame of ``table``) with the declared Arrow schema."""
    import json

    import pyarrow as pa

    cols = columns(table)
    schema = arrow_schema(cols, metadata, dictionaries)
    arrays = []
    for col, field in zip(cols, schema):
        s = df[col.name]
        if col.arrow == "json":
            values = [None if v is None else json.dumps(v, sort_keys=True) for v in s]
            arrays.append(pa.array(values, type=pa.string()))
        elif col.arrow.startswith("list<"):
            arrays.append(pa.array([None if v is None else list(v) for v in s], type=field.type))
        elif col.arrow == "dict" and dictionaries:
            arrays.append(pa.array(s.astype(object).where(s.notna(), None).tolist(), type=pa.string())
                          .dictionary_encode().cast(field.type))
        elif col.pandas == "string":
            arrays.append(pa.array(s.astype(object).where(s.notna(), None).tolist(), type=pa.string()))
        elif col.pandas == "Int64" or col.pandas == "boolean":
            arrays.append(pa.array(s.astype(object).where(s.notna(), None).tolist(), type=field.type))
        else:
            arrays.append(pa.Array.from_pandas(s, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def from_arrow(table: str | Sequence[Column], tbl):
    """The DataFrame of a pyarrow Table written by :func:`to_arrow` (the round trip gives back
    the same dtypes)."""
    import json

    import pandas as pd

    cols = columns(table)
    data = {}
    for col in cols:
        arr = tbl.column(col.name)
        values = arr.to_pylist()
        if col.arrow == "json":
            values = [None if v is None else json.loads(v) for v in values]
        if col.pandas == "datetime":
            data[col.name] = pd.Series(arr.to_pandas(), dtype=pandas_dtype(col))
        elif col.pandas == "timedelta":
            data[col.name] = pd.Series(arr.to_pandas(), dtype="timedelta64[ns]")
        else:
            data[col.name] = _series(col, values)
    return pd.DataFrame(data)[[c.name for c in cols]]


def describe_markdown(table: str) -> str:
    """The README's schema table for ``table``."""
    lines = ["| column | pandas | Arrow | meaning |", "|---|---|---|---|"]
    for c in columns(table):
        lines.append(f"| `{c.name}` | {c.pandas} | {c.arrow} | {c.meaning} |")
    return "\n".join(lines)
