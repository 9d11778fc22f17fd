"""One capture: the options, the fixed costs paid once per process, :func:`audit_one` (pure,
engine-agnostic) and :func:`audit_isolated` (the same in a bounded, forked child)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import select
import signal
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence

from meshpcap._dataclass import dataclass
from .. import schema
from ..errors import MeshpcapError

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
    quality: bool = True  # measure media streams and judge them (degraded findings)
    quality_targets: str | None = None  # media quality targets (TOML); None: Microsoft's Teams targets

    @classmethod
    def from_kwargs(cls, profile: str = "multi-room", service_tags=None, m365_endpoints=None, webslates=(),
                    webslate_allow=(), cloud_scripting=(), rules=None, fail_on: str = "missing",
                    use_cache: bool = True, quality: bool = True, quality_targets=None) -> "AuditOptions":
        prof = os.fspath(profile)
        if prof.endswith(".toml"):
            prof = os.path.abspath(prof)
        return cls(prof, _abspath(service_tags), _abspath(m365_endpoints), _tuple(webslates), _tuple(webslate_allow),
                   _tuple(cloud_scripting), _abspath(rules), fail_on, use_cache, bool(quality),
                   _abspath(quality_targets))


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
    targets: Any = None  # media quality targets (None: quality off)


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
    from ..rules import cached_service_tags

    tags_path = options.service_tags
    if tags_path is None and options.use_cache:
        found = cached_service_tags()
        tags_path = None if found is None else str(found)
    files = tuple(_stat_key(p) for p in (tags_path, options.m365_endpoints, options.rules, options.quality_targets,
                                         options.profile if options.profile.endswith(".toml") else None))
    return _fixed(options, tags_path, files)


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """SHA-256 over the package's own source (Python, C): a development build whose code changed
    under the same version number must not reuse results either."""
    root = Path(__file__).resolve().parent.parent  # the meshpcap package
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.suffix in (".py", ".c", ".toml") and p.is_file():
            h.update(str(p.relative_to(root)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=8)
def _fixed(options: AuditOptions, tags_path: str | None, files: tuple) -> _Fixed:
    from .. import __version__
    from ..pipeline import load_rules
    from ..rules import load_service_tags
    from ..classify import FAIL_ON

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
    targets = None
    if options.quality:
        from ..classify.quality import load_targets

        targets = load_targets(options.quality_targets)
    import pandas

    key = {
        "meshpcap": __version__,
        "code": _code_digest(),
        "schema": schema.SCHEMA_VERSION,
        "pandas": pandas.__version__.split(".")[0],
        "profile": hashlib.sha256(repr(prof).encode()).hexdigest(),  # every rule, its date and source
        "service_tags": tags_digest,
        "fail_on": options.fail_on,
        "quality": None if targets is None else hashlib.sha256(repr(targets).encode()).hexdigest(),
    }
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    profile_info = {"id": prof.id, "title": prof.title, "source": prof.source,
                    "date": prof.date.isoformat() if prof.date else None, "url": prof.url, "rules": len(prof.rules)}
    tags_info = None
    if tags is not None:
        tags_info = {"file": str(tags_path), "date": tags.date.isoformat() if tags.date else None,
                     "change_number": tags.change_number, "cloud": tags.cloud}
    return _Fixed(prof, tags, tags_path, fingerprint, profile_info, tags_info, targets)


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
    from ..pipeline import judge_table, media_collector, profile_for_date, read_flows

    options = options or AuditOptions()
    name = os.fspath(path)
    began = time.perf_counter()
    try:
        if sha256 is None or size is None:
            size, sha256 = file_digest(name)
    except OSError as exc:
        return error_result(name, f"{name}: cannot read: {exc.strerror or exc}", options=options,
                            seconds=time.perf_counter() - began)
    oom = False
    try:
        fx = fixed(options)
        ft = read_flows(name, media=media_collector(fx.targets))
        # as pipeline.analyze does, with the profile, snapshot and targets built once per process
        prof, notices = profile_for_date(fx.profile, ft, None, (), options.use_cache)
        report = judge_table(ft, prof, notices, fx.tags, fx.tags_path, options.fail_on, fx.targets)
        judgement = report.judgement
        flows = _keyed(FLOWS_TABLE, report.flows, name)
        findings = _keyed(FINDINGS_TABLE, report.findings, name)
    except MeshpcapError as exc:
        return error_result(name, str(exc), size=size, sha256=sha256, options=options,
                            seconds=time.perf_counter() - began)
    except MemoryError:
        oom = True  # the result is built after the handler, once the traceback (and what it holds) is gone
    except Exception as exc:  # a bug met by one hostile file must not end the batch (and is not cached)
        return error_result(name, f"internal error: {type(exc).__name__}: {exc}", size=size, sha256=sha256,
                            options=options, seconds=time.perf_counter() - began, deterministic=False)
    if oom:
        return error_result(name, "ran out of memory", size=size, sha256=sha256, options=options,
                            seconds=time.perf_counter() - began, deterministic=False)
    cap = ft.capture
    j = judgement
    counted = [f for f in j.findings if f.severity != "info"]
    row = _row(
        name, file_size=size, sha256=sha256, format=cap.get("format"), compression=cap.get("compression"),
        first_ns=cap.get("first_ns"), last_ns=cap.get("last_ns"), packets=cap.get("packets"), flows=len(ft.flows),
        verdict=j.verdict, errors=sum(1 for f in j.findings if f.severity == "error"), warnings=len(j.warnings),
        profile=report.profile["id"], profile_date=report.profile["date"],
        service_tags_date=(report.service_tags or {}).get("date"),
        service_tags_change_number=(report.service_tags or {}).get("change_number"),
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
    warm(options)  # in this process (a pool or Dask worker), once: the forked children inherit it
    began = time.perf_counter()
    limit = None
    if memory_limit is not None:
        limit = _address_space() + int(memory_limit) + int(size or 0)
    sys.stdout.flush()
    sys.stderr.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        _child_audit(r, w, name, options, sha256, size, limit, audit)  # never returns
    os.close(w)
    chunks, timed_out, status = _collect_child(r, pid, timeout)
    return _child_outcome(name, options, sha256, size, chunks, timed_out, status,
                          seconds=time.perf_counter() - began, timeout=timeout, memory_limit=memory_limit)


def _child_audit(r: int, w: int, name: str, options: AuditOptions, sha256: str | None, size: int | None,
                 limit: int | None, audit: Callable[..., AuditResult]) -> None:
    """The forked child's whole life: bounded (``RLIMIT_AS`` = ``limit``), writes one pickled result
    to ``w`` and leaves without cleanup (exit 0; 70 if anything at all went wrong). Never returns."""
    try:
        os.close(r)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        import faulthandler

        faulthandler.disable()  # a crash is reported as one error row, not a dump on stderr
        if limit is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        data = None
        try:
            result = audit(name, options, sha256=sha256, size=size)
            data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            pass  # answered below, once the traceback (and the memory it holds) is released
        if data is None:
            result = None
            data = pickle.dumps(error_result(name, "ran out of memory", size=size, sha256=sha256, options=options,
                                             deterministic=False))
        view = memoryview(data)
        while view:
            n = os.write(w, view)
            view = view[n:]
    except BaseException:
        os._exit(70)
    os._exit(0)


def _collect_child(r: int, pid: int, timeout: float | None) -> tuple[list[bytes], bool, int]:
    """The parent's side: read the child's bytes from ``r`` until it closes the pipe or ``timeout``
    seconds pass (then SIGKILL it), close ``r`` and reap the child. Returns (the bytes read, in
    chunks; whether it timed out; its ``waitpid`` status)."""
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
    return chunks, timed_out, status


def _child_outcome(name: str, options: AuditOptions, sha256: str | None, size: int | None, chunks: list[bytes],
                   timed_out: bool, status: int, *, seconds: float, timeout: float | None,
                   memory_limit: int | None) -> AuditResult:
    """How the child ended, as a result: its own result (with the parent's wall-clock ``seconds``), or
    an ``error`` row for a timeout, a signal, an exit without a result, or memory exhaustion."""
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


_warm_pid: int | None = None  # the process whose modules are imported


def warm(options: AuditOptions) -> None:
    """Pay the fixed costs in this process: the profile, the service-tag snapshot and its indexes,
    the modules every capture needs, the table schema's first DataFrame."""
    global _warm_pid
    if _warm_pid != os.getpid():
        import importlib

        for name in _WARM_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        schema.empty(FLOWS_TABLE)
        _warm_pid = os.getpid()
    try:
        fixed(options)
    except MeshpcapError:
        pass  # reported by each capture


def _worker_init(options: AuditOptions) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and ends the pool
    warm(options)
