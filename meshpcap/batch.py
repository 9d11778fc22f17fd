"""Batch audits: many captures, one table each of captures, flows and findings.

The unit of work is one capture: :func:`audit_one` (a pure function of a path and the
options, returning picklable tables) is what every engine runs, a local process pool, a Dask
cluster (``client=``), or a Ray task / Spark ``mapInPandas`` (README).  :func:`audit_isolated`
runs it in a forked child with an address-space limit and a timeout, so a file that crashes,
hangs or exhausts memory becomes one ``error`` row and the batch goes on.

This module sits above the pipeline (it imports it); no stage imports it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pickle
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from . import schema
from .errors import MeshpcapError

CAPTURES_TABLE = schema.CAPTURE_FIELDS
FLOWS_TABLE = schema.keyed("report_flows")
FINDINGS_TABLE = schema.keyed("findings")
TABLE_COLUMNS = {"captures": CAPTURES_TABLE, "flows": FLOWS_TABLE, "findings": FINDINGS_TABLE}

DEFAULT_TIMEOUT = 600.0  # seconds per capture
DEFAULT_MEMORY = 4 << 30  # address space a capture may use beyond its worker's (plus the file's size)


# -- options ---------------------------------------------------------------------------------------

def _tuple(v) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, (str, os.PathLike)):
        return (os.fspath(v),)
    return tuple(os.fspath(x) for x in v)


def _abspath(v) -> str | None:
    return None if v is None else os.path.abspath(os.fspath(v))


@dataclass(frozen=True, slots=True)
class AuditOptions:
    """What ``meshpcap.analyze()`` would be given, frozen and picklable (files as absolute paths,
    so a worker with another working directory finds them)."""

    profile: str = "multi-room"
    service_tags: str | None = None
    m365_endpoints: str | None = None
    webslates: tuple[str, ...] = ()
    webslate_allow: tuple[str, ...] = ()
    cloud_scripting: tuple[str, ...] = ()
    rules: str | None = None
    fail_on: str = "missing"
    use_cache: bool = True  # the service-tag snapshot cached by `meshpcap tags update` when none is given

    @classmethod
    def from_kwargs(cls, profile: str = "multi-room", service_tags=None, m365_endpoints=None, webslates=(),
                    webslate_allow=(), cloud_scripting=(), rules=None, fail_on: str = "missing",
                    use_cache: bool = True) -> "AuditOptions":
        prof = os.fspath(profile)
        if prof.endswith(".toml"):
            prof = os.path.abspath(prof)
        return cls(prof, _abspath(service_tags), _abspath(m365_endpoints), _tuple(webslates), _tuple(webslate_allow),
                   _tuple(cloud_scripting), _abspath(rules), fail_on, use_cache)


@dataclass(slots=True)
class _Fixed:
    """What every capture of a batch shares, built once per process: the profile with its
    add-ons, the service-tag snapshot (with the per-tag indexes its rules use), and the
    fingerprint of everything that changes a verdict."""

    profile: Any
    tags: Any
    tags_path: str | None
    fingerprint: str
    profile_info: dict
    tags_info: dict | None


def _stat_key(path: str | None):
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return (path, None)
    return (path, st.st_mtime_ns, st.st_size)


def fixed(options: AuditOptions) -> _Fixed:
    """The shared part of ``options``, from this process's cache (rebuilt when a file changed)."""
    from .rules import cached_service_tags

    tags_path = options.service_tags
    if tags_path is None and options.use_cache:
        found = cached_service_tags()
        tags_path = None if found is None else str(found)
    files = tuple(_stat_key(p) for p in (tags_path, options.m365_endpoints, options.rules,
                                         options.profile if options.profile.endswith(".toml") else None))
    return _fixed(options, tags_path, files)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 over the package's own source (Python, C): a development build whose code changed
    under the same version number must not reuse results either."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".c", ".toml") and p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=8)
def _fixed(options: AuditOptions, tags_path: str | None, files: tuple) -> _Fixed:
    from . import __version__
    from .pipeline import load_rules
    from .rules import load_service_tags
    from .classify import FAIL_ON

    if options.fail_on not in FAIL_ON:
        raise MeshpcapError(f"--fail-on: '{options.fail_on}' is not one of {', '.join(FAIL_ON)}")
    prof = load_rules(options.profile, options.m365_endpoints, options.webslates, options.webslate_allow,
                      options.cloud_scripting, options.rules)
    tags = load_service_tags(tags_path) if tags_path is not None else None
    tags_digest = None
    if tags is not None:
        tags_digest = hashlib.sha256(Path(tags_path).read_bytes()).hexdigest()
        for rule in prof.rules:  # the per-tag indexes judging will ask for: built here, once
            if rule.service_tag and rule.service_tag in tags.tags:
                tags.tag_index(rule.service_tag)
    import pandas

    key = {
        "meshpcap": __version__,
        "code": _code_digest(),
        "schema": schema.SCHEMA_VERSION,
        "pandas": pandas.__version__.split(".")[0],
        "profile": hashlib.sha256(repr(prof).encode()).hexdigest(),  # every rule, its date and source
        "service_tags": tags_digest,
        "fail_on": options.fail_on,
    }
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    profile_info = {"id": prof.id, "title": prof.title, "source": prof.source,
                    "date": prof.date.isoformat() if prof.date else None, "url": prof.url, "rules": len(prof.rules)}
    tags_info = None
    if tags is not None:
        tags_info = {"file": str(tags_path), "date": tags.date.isoformat() if tags.date else None,
                     "change_number": tags.change_number, "cloud": tags.cloud}
    return _Fixed(prof, tags, tags_path, fingerprint, profile_info, tags_info)


# -- one capture -----------------------------------------------------------------------------------

@dataclass(slots=True)
class AuditResult:
    """One capture's tables: its ``captures`` row (a dict) and its flows and findings frames
    (the batch schema, ``capture`` key first).  ``deterministic``: the same bytes and options
    give the same result (cacheable); False for timeouts, crashes and memory exhaustion."""

    capture: dict[str, Any]
    flows: Any
    findings: Any
    deterministic: bool = True


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size, SHA-256 hex) of a file's bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _row(path: str, **values) -> dict[str, Any]:
    row = {c.name: None for c in CAPTURES_TABLE if c.pandas not in ("datetime", "timedelta")}
    row["capture"] = path
    row["cached"] = False
    row.update(values)
    return row


def error_result(path: str, message: str, *, size=None, sha256=None, seconds=None, options: AuditOptions | None = None,
                 deterministic: bool = True) -> AuditResult:
    row = _row(path, file_size=size, sha256=sha256, verdict="error", error=message, seconds=seconds)
    if options is not None:
        row["profile"] = options.profile
    return AuditResult(row, schema.empty(FLOWS_TABLE), schema.empty(FINDINGS_TABLE), deterministic)


def _keyed(table: Sequence[schema.Column], df, path: str):
    """``df`` (a single-capture frame, already of the schema's dtypes) with the ``capture`` key first."""
    import pandas as pd

    df.insert(0, "capture", pd.array([path] * len(df), dtype=schema.pandas_dtype(schema.CAPTURE_KEY)))
    return df


def audit_one(path: str | os.PathLike, options: AuditOptions | None = None, *, sha256: str | None = None,
              size: int | None = None) -> AuditResult:
    """Read and judge one capture; never raises for a bad capture (its row says ``error``).

    Pure and engine-agnostic: the result depends on the file's bytes and ``options`` only
    (plus the wall time in ``seconds``), and pickles, so any scheduler can call it."""
    from .classify import judge
    from .pipeline import read_flows
    from .report.analysis import Report
    from .rules.match import RuleMatcher

    options = options or AuditOptions()
    name = os.fspath(path)
    began = time.perf_counter()
    try:
        if sha256 is None or size is None:
            size, sha256 = file_digest(name)
    except OSError as exc:
        return error_result(name, f"{name}: cannot read: {exc.strerror or exc}", options=options,
                            seconds=time.perf_counter() - began)
    try:
        fx = fixed(options)
        ft = read_flows(name)
        # as pipeline.analyze does, with the profile and snapshot built once per process
        matcher = RuleMatcher(fx.profile.rules, fx.tags)
        judgement = judge(ft, fx.profile, matcher, fx.tags is not None, options.fail_on)
        report = Report(ft, judgement, fx.profile_info, fx.tags_info, {"fail_on": options.fail_on})
        flows = _keyed(FLOWS_TABLE, report.flows, name)
        findings = _keyed(FINDINGS_TABLE, report.findings, name)
    except MeshpcapError as exc:
        return error_result(name, str(exc), size=size, sha256=sha256, options=options,
                            seconds=time.perf_counter() - began)
    except MemoryError:
        return error_result(name, "ran out of memory", size=size, sha256=sha256, options=options,
                            seconds=time.perf_counter() - began, deterministic=False)
    except Exception as exc:  # a bug met by one hostile file must not end the batch (and is not cached)
        return error_result(name, f"internal error: {type(exc).__name__}: {exc}", size=size, sha256=sha256,
                            options=options, seconds=time.perf_counter() - began, deterministic=False)
    cap = ft.capture
    j = judgement
    counted = [f for f in j.findings if f.severity != "info"]
    row = _row(
        name, file_size=size, sha256=sha256, format=cap.get("format"), compression=cap.get("compression"),
        first_ns=cap.get("first_ns"), last_ns=cap.get("last_ns"), packets=cap.get("packets"), flows=len(ft.flows),
        verdict=j.verdict, errors=sum(1 for f in j.findings if f.severity == "error"), warnings=len(j.warnings),
        profile=fx.profile_info["id"], profile_date=fx.profile_info["date"],
        service_tags_date=(fx.tags_info or {}).get("date"),
        service_tags_change_number=(fx.tags_info or {}).get("change_number"),
        m365_endpoints=None if options.m365_endpoints is None else os.path.basename(options.m365_endpoints),
        seconds=time.perf_counter() - began,
        **{k: sum(1 for f in counted if f.kind == k) for k in schema.FINDING_KINDS},
    )
    return AuditResult(row, flows, findings)


# -- one capture, bounded --------------------------------------------------------------------------

def _address_space() -> int:
    """This process's virtual size in bytes (0 where /proc is not)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def audit_isolated(path: str | os.PathLike, options: AuditOptions | None = None, *, sha256: str | None = None,
                   size: int | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                   memory_limit: int | None = DEFAULT_MEMORY,
                   audit: Callable[..., AuditResult] | None = None) -> AuditResult:
    """:func:`audit_one` in a forked child with ``RLIMIT_AS`` = this process's size + ``memory_limit``
    + the file's size (it may be mapped) and a wall-clock ``timeout``: a crash, a hang or memory
    exhaustion ends the child, never the caller, and comes back as an ``error`` row.

    Where ``os.fork`` is missing (Windows) it runs :func:`audit_one` here, without bounds."""
    audit = audit or audit_one
    name = os.fspath(path)
    options = options or AuditOptions()
    if not hasattr(os, "fork"):
        return audit(name, options, sha256=sha256, size=size)
    if size is None or sha256 is None:
        try:
            size, sha256 = file_digest(name)
        except OSError as exc:
            return error_result(name, f"{name}: cannot read: {exc.strerror or exc}", options=options)
    began = time.perf_counter()
    limit = None
    if memory_limit is not None:
        limit = _address_space() + int(memory_limit) + int(size or 0)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: bounded, writes one pickled result, leaves without cleanup
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            import faulthandler

            faulthandler.disable()  # a crash is reported as one error row, not a dump on stderr
            if limit is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                result = audit(name, options, sha256=sha256, size=size)
                data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
            except MemoryError:
                data = pickle.dumps(error_result(name, "ran out of memory", size=size, sha256=sha256, options=options,
                                                 deterministic=False))
            view = memoryview(data)
            while view:
                n = os.write(w, view)
                view = view[n:]
        except BaseException:
            os._exit(70)
        os._exit(0)
    os.close(w)
    chunks: list[bytes] = []
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    timed_out = False
    try:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], wait)
            if not ready:
                continue
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        if timed_out:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - began
    mib = f"{int(memory_limit) >> 20} MiB" if memory_limit is not None else "no limit"
    if timed_out:
        return error_result(name, f"timed out after {float(timeout):g} s (stopped)", size=size, sha256=sha256,
                            seconds=seconds, options=options, deterministic=False)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            signame = signal.Signals(sig).name
        except ValueError:
            signame = f"signal {sig}"
        why = " (killed: out of memory?)" if sig == signal.SIGKILL else ""
        return error_result(name, f"the audit crashed ({signame}){why}", size=size, sha256=sha256, seconds=seconds,
                            options=options, deterministic=False)
    try:
        result = pickle.loads(b"".join(chunks)) if chunks else None
    except Exception:
        result = None
    if not isinstance(result, AuditResult):
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
        return error_result(name, f"the audit ended without a result (exit {code}; memory limit {mib}?)", size=size,
                            sha256=sha256, seconds=seconds, options=options, deterministic=False)
    if result.capture.get("error") == "ran out of memory":
        result.capture["error"] = f"ran out of memory (limit {mib} beyond the worker)"
    result.capture["seconds"] = seconds
    return result


# -- finding captures ------------------------------------------------------------------------------

def _is_capture_head(head: bytes) -> bool:
    from .capture import pcap, pcapng

    return head[:4] in pcap.MAGICS or head[:4] == pcapng.SHB_MAGIC


def looks_like_capture(path: str | os.PathLike) -> bool:
    """True when the file's bytes begin as a pcap or pcapng file, plain or gzip/zstd-compressed
    (the magic numbers, never the name)."""
    from .capture.reader import GZIP_MAGIC, ZSTD_MAGIC

    try:
        with open(path, "rb") as f:
            head = f.read(4)
            if _is_capture_head(head):
                return True
            if head[:2] == GZIP_MAGIC:
                import zlib

                f.seek(0)
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out = b""
                while len(out) < 4 and (chunk := f.read(4096)):
                    try:
                        out += d.decompress(chunk, 4 - len(out))
                    except zlib.error:
                        return False
                return _is_capture_head(out)
            if head == ZSTD_MAGIC:
                import zstandard

                f.seek(0)
                try:
                    with zstandard.ZstdDecompressor().stream_reader(f) as z:
                        return _is_capture_head(z.read(4))
                except zstandard.ZstdError:
                    return False
    except OSError:
        return False
    return False


def find_captures(paths_or_globs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Files to audit, in order, each once: a file as given (whatever it holds: an unreadable one
    becomes an ``error`` row), a glob's matches, a directory's captures (searched recursively,
    chosen by their bytes)."""
    if isinstance(paths_or_globs, (str, os.PathLike)):
        paths_or_globs = [paths_or_globs]
    out: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in paths_or_globs:
        text = os.fspath(item)
        if os.path.isdir(text):
            inside = [os.path.join(root, fname) for root, _, files in os.walk(text) for fname in files]
            for p in sorted(inside):
                if os.path.isfile(p) and looks_like_capture(p):
                    add(p)
        elif os.path.exists(text) or not glob.has_magic(text):
            add(text)
        else:
            for p in sorted(glob.glob(text, recursive=True)):
                if os.path.isdir(p):
                    for q in find_captures([p]):
                        add(q)
                else:
                    add(p)
    return out


# -- the batch -------------------------------------------------------------------------------------

@dataclass(slots=True)
class BatchReport:
    """What :func:`analyze_many` returns: three DataFrames and the fleet view."""

    captures: Any
    flows: Any
    findings: Any
    options: AuditOptions
    metadata: dict[str, str] = field(default_factory=dict)
    analysed: int = 0  # captures analysed in this run
    reused: int = 0  # captures whose cached result was reused

    @property
    def verdict(self) -> str:
        """fail if any capture fails, else error if any could not be audited, else inconclusive if
        any is, else pass (an empty batch is inconclusive)."""
        verdicts = set(self.captures["verdict"].dropna())
        for v in ("fail", "error", "inconclusive"):
            if v in verdicts:
                return v
        return "pass" if verdicts else "inconclusive"

    def summary(self) -> "FleetSummary":
        return fleet_summary(self)

    def tables(self) -> dict[str, Any]:
        return {"captures": self.captures, "flows": self.flows, "findings": self.findings}

    def write(self, path: str | os.PathLike) -> list[Path]:
        """Write the tables by the name's extension (see :func:`write_output`)."""
        return write_output(self, path)

    def __repr__(self) -> str:
        counts = self.captures["verdict"].value_counts().to_dict()
        parts = ", ".join(f"{counts.get(v, 0)} {v}" for v in schema.BATCH_VERDICTS)
        return (f"<meshpcap BatchReport: {len(self.captures)} captures ({parts}); {len(self.flows)} flows, "
                f"{len(self.findings)} findings>")


@dataclass(slots=True)
class FleetSummary:
    """The fleet view: verdict counts, which rules fail at how many captures with the worst
    evidence for each, and the captures that are inconclusive or could not be audited."""

    verdicts: dict[str, int]
    rules: Any  # DataFrame: rule, kind, captures, findings, worst_capture, worst_flow, worst_time, title
    inconclusive: list[str]
    errors: list[tuple[str, str]]

    def __str__(self) -> str:
        return render_summary(self)

    def to_dict(self) -> dict[str, Any]:
        rules = []
        for rec in self.rules.to_dict("records"):
            rec = {k: (None if _isna(v) else v) for k, v in rec.items()}
            if rec.get("worst_time") is not None:
                rec["worst_time"] = rec["worst_time"].isoformat()
            rules.append(rec)
        return {"verdicts": self.verdicts, "rules": rules, "inconclusive": self.inconclusive,
                "errors": [{"capture": c, "error": e} for c, e in self.errors]}


def _isna(v) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fleet_summary(batch: BatchReport) -> FleetSummary:
    import pandas as pd

    caps = batch.captures
    verdicts = {v: int((caps["verdict"] == v).sum()) for v in schema.BATCH_VERDICTS}
    f = batch.findings
    failing = f[f["severity"] == "error"].copy()
    rows = []
    if len(failing):
        failing["n_flows"] = failing["flow_ids"].map(lambda x: len(x) if x is not None else 0)
        first_seen = batch.flows.set_index(["capture", "id"])["first_seen"] if len(batch.flows) else None
        for (rule, kind), g in failing.groupby([failing["rule"].fillna(""), "kind"], sort=True):
            worst = g.sort_values(["n_flows", "capture"], ascending=[False, True]).iloc[0]
            flow = worst["flow_ids"][0] if worst["flow_ids"] else None
            when = worst["first_seen"]
            if pd.isna(when) and flow is not None and first_seen is not None:
                when = first_seen.get((worst["capture"], flow), pd.NaT)
            rows.append({"rule": rule or None, "kind": kind, "captures": int(g["capture"].nunique()),
                         "findings": len(g), "worst_capture": worst["capture"], "worst_flow": flow,
                         "worst_flows": int(worst["n_flows"]), "worst_time": when, "title": worst["title"]})
    cols = ["rule", "kind", "captures", "findings", "worst_capture", "worst_flow", "worst_flows", "worst_time", "title"]
    rules = pd.DataFrame(rows, columns=cols)
    if len(rules):
        rules = rules.sort_values(["captures", "findings", "rule"], ascending=[False, False, True], ignore_index=True)
    rules = rules.astype({"captures": "int64", "findings": "int64", "worst_flow": "Int64", "worst_flows": "int64"})
    # NaT where no flow gives a time (a "missing" finding): built as UTC whatever the mix
    rules["worst_time"] = pd.to_datetime(pd.Series(list(rules["worst_time"]), index=rules.index, dtype=object),
                                         utc=True).astype("datetime64[ns, UTC]")
    inconclusive = caps.loc[caps["verdict"] == "inconclusive", "capture"].tolist()
    errors = list(zip(caps.loc[caps["verdict"] == "error", "capture"], caps.loc[caps["verdict"] == "error", "error"]))
    return FleetSummary(verdicts, rules, inconclusive, [(c, e) for c, e in errors])


def render_summary(s: FleetSummary) -> str:
    total = sum(s.verdicts.values())
    out = [f"FLEET: {total} capture{'s' if total != 1 else ''}: "
           + ", ".join(f"{s.verdicts.get(v, 0)} {v}" for v in schema.BATCH_VERDICTS)]
    if len(s.rules):
        out.append("")
        out.append("FAILING RULES (captures, findings, worst evidence)")
        for rec in s.rules.to_dict("records"):
            when = "" if _isna(rec["worst_time"]) else f" at {rec['worst_time'].isoformat()}"
            flow = "" if _isna(rec["worst_flow"]) else f" flow {rec['worst_flow']}"
            n = rec["worst_flows"]
            evidence = (f"worst {rec['worst_capture']}{flow}{when} ({n} flow{'s' if n != 1 else ''})" if n
                        else f"e.g. {rec['worst_capture']}")  # a missing finding rests on no flow
            out.append(f"  {rec['rule'] or '-'} {rec['kind']}: {rec['captures']} capture{'s' if rec['captures'] != 1 else ''}, "
                       f"{rec['findings']} finding{'s' if rec['findings'] != 1 else ''}; {evidence}: {rec['title']}")
    if s.inconclusive:
        out.append("")
        out.append("INCONCLUSIVE")
        out += [f"  {c}" for c in s.inconclusive]
    if s.errors:
        out.append("")
        out.append("ERRORS")
        out += [f"  {c}: {e}" for c, e in s.errors]
    return "\n".join(out) + "\n"


# -- engines ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Task:
    index: int
    path: str
    size: int | None
    sha256: str | None


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


# Modules the pipeline imports on first use: imported once in the worker, not in every forked
# child (each child's own imports die with it; about 0.1 s a capture).
_WARM_MODULES = (
    "meshpcap.pipeline", "meshpcap.capture.pcap", "meshpcap.capture.pcapng", "meshpcap.capture.parallel",
    "meshpcap.capture.accel", "meshpcap.decode.frames", "meshpcap.decode.tls", "meshpcap.decode.quic",
    "meshpcap.decode.dns", "meshpcap.decode.http", "meshpcap.decode.stun", "meshpcap.flows.naming",
    "meshpcap.flows.community", "meshpcap.classify", "meshpcap.rules.match", "meshpcap.report.analysis",
    "cryptography.hazmat.primitives.ciphers.aead", "cryptography.hazmat.primitives.kdf.hkdf",
    "cryptography.hazmat.primitives.ciphers", "cryptography.x509", "email.parser", "importlib.metadata",
)


def warm(options: AuditOptions) -> None:
    """Pay the fixed costs in this process: the profile, the service-tag snapshot and its indexes,
    the modules every capture needs, the table schema's first DataFrame."""
    import importlib

    for name in _WARM_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    schema.empty(FLOWS_TABLE)
    try:
        fixed(options)
    except MeshpcapError:
        pass  # reported by each capture


def _worker_init(options: AuditOptions) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends the pool
    warm(options)


def _cached_or_audit(t: _Task, options: AuditOptions, timeout, memory_limit, audit, store: "ResultCache | None",
                     force: bool, fingerprint: str) -> tuple[int, AuditResult, bool]:
    """One task where it runs (a pool worker): hash the file, reuse a cached result or audit it in a
    bounded child, and cache a deterministic result.  Returns (index, result, reused)."""
    size, sha = t.size, t.sha256
    if sha is None:
        try:
            size, sha = file_digest(t.path)
        except OSError as exc:
            return t.index, error_result(t.path, f"{t.path}: cannot read: {exc.strerror or exc}", options=options), False
    if store is not None and not force:
        hit = store.get(sha, fingerprint)
        if hit is not None:
            hit = _rekey(hit, t.path)
            hit.capture["cached"] = True
            return t.index, hit, True
    result = audit_isolated(t.path, options, sha256=sha, size=size, timeout=timeout, memory_limit=memory_limit,
                            audit=audit)
    if store is not None and result.deterministic and result.capture.get("sha256") == sha:
        store.put(sha, fingerprint, result)
    return t.index, result, False


def _run_local(tasks: list[_Task], options, jobs, timeout, memory_limit, audit, store, force,
               fingerprint, started: Callable[[], Any] = lambda: None) -> Iterator[tuple[int, AuditResult, bool]]:
    """A process pool (even for one job: the bounded children are then forked from a worker that
    runs no thread, never from this process, which may run a progress bar's)."""
    args = (options, timeout, memory_limit, audit, store, force, fingerprint)
    if not tasks:
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    ctx = multiprocessing.get_context(method)
    # forked from this process, already warm: the workers start with the fixed costs paid
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=ctx, initializer=_worker_init,
                               initargs=(options,))
    try:
        pending = {pool.submit(_cached_or_audit, t, *args): t for t in tasks}
        started()  # the workers exist now (a fork pool starts them all at the first submit)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                t = pending.pop(fut)
                try:
                    yield fut.result()
                except Exception as exc:  # the worker itself died (it should not: captures run in its children)
                    yield t.index, error_result(t.path, f"worker failed: {type(exc).__name__}: {exc}",
                                                size=t.size, sha256=t.sha256, options=options,
                                                deterministic=False), False
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask_key(t: _Task, fingerprint: str) -> str:
    return f"meshpcap-audit-{t.sha256}-{fingerprint[:16]}"


def _run_dask(tasks: list[_Task], options, client, timeout, memory_limit, audit, fingerprint,
              retries: int = 2) -> Iterator[tuple[int, AuditResult]]:
    """The same per-capture function as futures on a Dask cluster: keys from the content hash
    (identical files are audited once), as_completed, retries for lost workers."""
    from distributed import as_completed

    own = None
    if isinstance(client, str):
        from distributed import Client

        try:
            client = own = Client(client, timeout=30)
        except (OSError, TimeoutError) as exc:
            raise MeshpcapError(f"--dask {client}: cannot reach the scheduler: {exc}") from None
    try:
        yield from _dask_results(tasks, options, client, timeout, memory_limit, audit, fingerprint, retries,
                                 as_completed)
    finally:
        if own is not None:
            own.close()


def _dask_results(tasks, options, client, timeout, memory_limit, audit, fingerprint, retries, as_completed):
    by_key: dict[str, list[_Task]] = {}
    futures = {}
    for t in tasks:
        key = _dask_key(t, fingerprint)
        if key not in by_key:
            by_key[key] = []
            futures[key] = client.submit(audit_isolated, t.path, options, sha256=t.sha256, size=t.size,
                                         timeout=timeout, memory_limit=memory_limit, audit=audit, key=key,
                                         retries=retries, pure=False)
        by_key[key].append(t)
    for fut in as_completed(list(futures.values())):
        group = by_key[fut.key]
        try:
            result = fut.result()
        except Exception as exc:  # e.g. KilledWorker after the retries
            result = error_result(group[0].path, f"cluster: {type(exc).__name__}: {exc}", size=group[0].size,
                                  sha256=group[0].sha256, options=options, deterministic=False)
        finally:
            fut.release()
        for t in group:
            yield t.index, _rekey(result, t.path)


def _rekey(result: AuditResult, path: str) -> AuditResult:
    """The same result under another capture path (a cache hit, or identical bytes at two paths)."""
    if result.capture.get("capture") == path:
        return result
    row = dict(result.capture, capture=path)
    flows = result.flows.copy()
    flows["capture"] = path
    findings = result.findings.copy()
    findings["capture"] = path
    return AuditResult(row, schema.conform(FLOWS_TABLE, flows), schema.conform(FINDINGS_TABLE, findings),
                       result.deterministic)


# -- the result cache ------------------------------------------------------------------------------

def default_cache_dir() -> Path:
    from .rules.servicetags import cache_dir

    return cache_dir() / "audits"


class ResultCache:
    """Results keyed by the capture's SHA-256 and the fingerprint of everything that changes a
    verdict (meshpcap version, table schema, every rule of the profile with its date, the
    service-tag snapshot's bytes, --fail-on); one pickle per entry, written atomically."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    def _path(self, sha256: str, fingerprint: str) -> Path:
        return self.directory / sha256[:2] / f"{sha256}-{fingerprint[:32]}.pickle"

    def get(self, sha256: str, fingerprint: str) -> AuditResult | None:
        try:
            with open(self._path(sha256, fingerprint), "rb") as f:
                result = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError):
            return None
        return result if isinstance(result, AuditResult) else None

    def put(self, sha256: str, fingerprint: str, result: AuditResult) -> None:
        path = self._path(sha256, fingerprint)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a cache that cannot be written only costs time


# -- progress --------------------------------------------------------------------------------------

class _Progress:
    """A progress display for the batch: rich on a terminal's stderr, tqdm.auto's widget in
    Jupyter, a callable given by the caller, or nothing."""

    def __init__(self, progress, total: int) -> None:
        self.total = total
        self.done = 0
        self.callback = None
        self.bar = None
        self.kind = None
        self.progress = progress

    def start(self) -> "_Progress":
        """Show the display (after the worker processes are forked: its thread must not be
        copied into them)."""
        progress, total = self.progress, self.total
        if self.kind is not None or self.callback is not None:
            return self
        if callable(progress):
            self.callback = progress
            return self
        if progress is False or total == 0:
            return self
        jupyter = _in_jupyter()
        if jupyter:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="capture", desc="meshpcap batch")
                self.kind = "tqdm"
                return self
            except ImportError:
                pass  # rich draws in the notebook too
        elif progress is None and not _isatty(sys.stderr):
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
        from rich.progress import TimeRemainingColumn

        console = Console(force_jupyter=True) if jupyter else Console(file=sys.stderr)
        self.bar = Progress(TextColumn("meshpcap batch"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=console,
                            transient=not jupyter,
                            # lines printed meanwhile go above the bar only when they go to the same
                            # terminal; `batch ... > out.txt` keeps them in the file
                            redirect_stdout=jupyter or _isatty(sys.stdout), redirect_stderr=False)
        self.bar.start()
        self.task = self.bar.add_task("audit", total=total, rate="")
        self.began = time.monotonic()
        self.kind = "rich"
        return self

    def advance(self, row: dict) -> None:
        self.start()
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, row)
        elif self.kind == "tqdm":
            self.bar.update(1)
        elif self.kind == "rich":
            rate = self.done / max(time.monotonic() - self.began, 1e-9)
            self.bar.update(self.task, advance=1, rate=f"{rate:.1f}/s")

    def print(self, line: str) -> None:
        """A line on standard output (rich's bar redirects it above itself)."""
        print(line, flush=True)

    def close(self) -> None:
        if self.kind == "rich":
            self.bar.stop()
        elif self.kind == "tqdm":
            self.bar.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


# -- analyze_many ----------------------------------------------------------------------------------

def analyze_many(paths_or_globs, *, jobs: int | None = None, client=None, progress=None, cache=None,
                 force: bool = False, timeout: float | None = DEFAULT_TIMEOUT,
                 memory_limit: int | None = DEFAULT_MEMORY, on_result: Callable[[dict], None] | None = None,
                 audit: Callable[..., AuditResult] | None = None, **analyze_options) -> BatchReport:
    """Audit many captures; returns a :class:`BatchReport` (``.captures``, ``.flows``,
    ``.findings``, ``.summary()``).

    ``paths_or_globs``: files, globs and directories (searched for captures by their bytes).
    ``jobs``: worker processes (default one per core); ``client``: a ``distributed.Client`` or
    a scheduler address, to run on a Dask cluster instead.  ``cache``: a directory (or True for
    the user cache) of results keyed by content hash and options, reused unless ``force``.
    ``progress``: None (a bar when stderr is a terminal or in Jupyter), False, True, or a
    callable ``(done, total, captures_row)``.  ``timeout`` (s) and ``memory_limit`` (bytes of
    address space beyond the worker's) bound each capture.  ``on_result(row)`` is called as each
    capture finishes.  Other keywords are ``meshpcap.analyze``'s (``profile``,
    ``service_tags``, ``rules``, ...).  ``audit``: the per-capture function (default
    :func:`audit_one`; must be importable by the workers).
    """
    from . import __version__

    options = AuditOptions.from_kwargs(**analyze_options)
    fx = fixed(options)  # a bad profile, rule or tag file fails here, once, as analyze() would
    paths = find_captures(paths_or_globs)
    store = None
    if cache is not None and cache is not False:
        store = ResultCache(default_cache_dir() if cache is True else cache)
    results: list[AuditResult | None] = [None] * len(paths)
    reused = 0
    bar = _Progress(progress, len(paths))

    def finished(i: int, result: AuditResult) -> None:
        results[i] = result
        bar.advance(result.capture)
        if on_result is not None:
            on_result(result.capture)

    try:
        warm(options)
        if client is not None:  # the keys need the content hashes up front; cache hits stay here
            todo: list[_Task] = []
            for i, p in enumerate(paths):
                try:
                    size, sha = file_digest(p)
                except OSError as exc:
                    finished(i, error_result(p, f"{p}: cannot read: {exc.strerror or exc}", options=options))
                    continue
                hit = None if store is None or force else store.get(sha, fx.fingerprint)
                if hit is not None:
                    hit = _rekey(hit, p)
                    hit.capture["cached"] = True
                    reused += 1
                    finished(i, hit)
                else:
                    todo.append(_Task(i, p, size, sha))
            analysed = len(todo)
            bar.start()
            for i, result in _run_dask(todo, options, client, timeout, memory_limit, audit, fx.fingerprint):
                if store is not None and result.deterministic and result.capture.get("sha256"):
                    store.put(result.capture["sha256"], fx.fingerprint, result)
                finished(i, result)
        else:
            tasks = [_Task(i, p, None, None) for i, p in enumerate(paths)]
            analysed = 0
            for i, result, was_cached in _run_local(tasks, options, jobs or _default_jobs(), timeout, memory_limit,
                                                    audit, store, force, fx.fingerprint, started=bar.start):
                reused += was_cached
                analysed += not was_cached
                finished(i, result)
    finally:
        bar.close()
    done = [r for r in results if r is not None]
    captures = schema.frame(CAPTURES_TABLE, [r.capture for r in done])
    flows = _concat(FLOWS_TABLE, [r.flows for r in done])
    findings = _concat(FINDINGS_TABLE, [r.findings for r in done])
    metadata = {
        "schema": schema.SCHEMA_VERSION,
        "meshpcap": __version__,
        "profile": fx.profile_info["id"],
        "profile_date": fx.profile_info["date"] or "",
        "profile_source": fx.profile_info["source"] or "",
        "service_tags_file": os.path.basename(fx.tags_path) if fx.tags_path else "",
        "service_tags_date": (fx.tags_info or {}).get("date") or "",
        "service_tags_change_number": str((fx.tags_info or {}).get("change_number") or ""),
        "m365_endpoints": os.path.basename(options.m365_endpoints) if options.m365_endpoints else "",
        "rules_file": os.path.basename(options.rules) if options.rules else "",
        "fingerprint": fx.fingerprint,
    }
    return BatchReport(captures, flows, findings, options, metadata, analysed=analysed, reused=reused)


def _concat(table, frames: list):
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty(table)
    return schema.conform(table, pd.concat(frames, ignore_index=True))


# -- writing ---------------------------------------------------------------------------------------

def write_parquet(batch: BatchReport, directory: str | os.PathLike) -> list[Path]:
    """The three tables as ``DIR/captures.parquet``, ``DIR/flows.parquet``, ``DIR/findings.parquet``
    (pyarrow), each with its explicit Arrow schema and the batch's metadata."""
    import pyarrow.parquet as pq

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    for name, df in batch.tables().items():
        meta = {**batch.metadata, "table": name, "meshpcap.schema": json.dumps(
            [{"name": c.name, "pandas": c.pandas, "arrow": c.arrow, "meaning": c.meaning}
             for c in TABLE_COLUMNS[name]])}
        tbl = schema.to_arrow(TABLE_COLUMNS[name], df, meta)
        path = d / f"{name}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(tbl, tmp)
        os.replace(tmp, path)
        written.append(path)
    return written


def read_parquet(directory: str | os.PathLike) -> dict[str, Any]:
    """The tables written by :func:`write_parquet`, with the in-memory dtypes."""
    import pyarrow.parquet as pq

    return {name: schema.from_arrow(TABLE_COLUMNS[name], pq.read_table(Path(directory) / f"{name}.parquet"))
            for name in TABLE_COLUMNS}


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    if _isna(v):
        return ""
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def write_csv(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    """``audit.csv`` (captures) with ``audit.flows.csv`` and ``audit.findings.csv`` beside it;
    list and record cells as JSON, missing values empty."""
    import csv

    p = Path(path)
    stem = p.name[: -len(".csv")] if p.name.endswith(".csv") else p.name
    targets = {"captures": p, "flows": p.with_name(f"{stem}.flows.csv"), "findings": p.with_name(f"{stem}.findings.csv")}
    for name, df in batch.tables().items():
        cols = [c.name for c in TABLE_COLUMNS[name]]
        with open(targets[name], "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for rec in df[cols].itertuples(index=False, name=None):
                w.writerow([_cell(v) for v in rec])
    return list(targets.values())


def _json_value(v):
    if v is None or isinstance(v, (list, dict, str, bool, int, float)):
        return v
    if _isna(v):
        return None
    if hasattr(v, "total_seconds"):  # a duration: integer nanoseconds, as the *_ns columns
        return int(v.value)
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return v.item()
    return v


def to_json_document(batch: BatchReport) -> dict[str, Any]:
    """The batch as one JSON document (``meshpcap.batch/1``): metadata, summary and the three
    tables as lists of records (times ISO 8601, durations integer ns, missing values null)."""
    def records(df):
        cols = list(df.columns)
        return [{k: _json_value(v) for k, v in zip(cols, rec)} for rec in df.itertuples(index=False, name=None)]

    return {"schema": "meshpcap.batch/1", "metadata": batch.metadata, "summary": batch.summary().to_dict(),
            **{name: records(df) for name, df in batch.tables().items()}}


def write_json(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    p = Path(path)
    p.write_text(json.dumps(to_json_document(batch), indent=2, default=_json_default) + "\n", encoding="utf-8")
    return [p]


def _json_default(v):
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    return str(v)


def write_output(batch: BatchReport, path: str | os.PathLike) -> list[Path]:
    """By the name's extension: ``.parquet`` (a directory of one file per table), ``.csv``, ``.json``."""
    name = os.fspath(path)
    if name.endswith(".parquet"):
        return write_parquet(batch, name)
    if name.endswith(".csv"):
        return write_csv(batch, name)
    if name.endswith(".json"):
        return write_json(batch, name)
    raise MeshpcapError(f"{name}: output must end in .parquet, .csv or .json")
