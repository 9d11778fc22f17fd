"""Batch audits: many captures, one table each of captures, flows and findings.

The unit of work is one capture: :func:`audit_one` (a pure function of a path and the
options, returning picklable tables) is what every engine runs, a local process pool, a Dask
cluster (``client=``), or a Ray task / Spark ``mapInPandas`` (README).  :func:`audit_isolated`
runs it in a forked child with an address-space limit and a timeout, so a file that crashes,
hangs or exhausts memory becomes one ``error`` row and the batch goes on.

This module sits above the pipeline (it imports it); no stage imports it.
"""

from __future__ import annotations

import os
from typing import Callable

from .. import schema
from .audit import (CAPTURES_TABLE, DEFAULT_MEMORY, DEFAULT_TIMEOUT, FINDINGS_TABLE, FLOWS_TABLE, TABLE_COLUMNS,
                    AuditOptions, AuditResult, audit_isolated, audit_one, error_result, file_digest, fixed, warm)
from .cache import ResultCache, default_cache_dir
from .discover import find_captures, looks_like_capture
from .engines import _default_jobs, _rekey, _run_dask, _run_local, _Task
from .fleet import BatchReport, FleetSummary, fleet_summary, render_summary
from .output import read_parquet, to_json_document, write_csv, write_json, write_output, write_parquet
from .progress import _Progress

__all__ = ["analyze_many", "audit_one", "audit_isolated", "AuditOptions", "AuditResult", "BatchReport", "FleetSummary",
           "find_captures", "looks_like_capture", "write_output", "write_parquet", "read_parquet", "write_csv",
           "write_json", "to_json_document", "fleet_summary", "render_summary", "ResultCache", "TABLE_COLUMNS",
           "CAPTURES_TABLE", "FLOWS_TABLE", "FINDINGS_TABLE"]


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
    options = AuditOptions.from_kwargs(**analyze_options)
    fx = fixed(options)  # a bad profile, rule or tag file fails here, once, as analyze() would
    paths = find_captures(paths_or_globs)
    store = None
    if cache is not None and cache is not False:
        store = ResultCache(default_cache_dir() if cache is True else cache)
    results: list[AuditResult | None] = [None] * len(paths)
    bar = _Progress(progress, len(paths), [_size(p) for p in paths])

    def finished(i: int, result: AuditResult) -> None:
        results[i] = result
        bar.advance(result.capture, i)
        if on_result is not None:
            on_result(result.capture)

    try:
        warm(options)
        if client is not None:
            analysed, reused = _run_on_dask(paths, options, fx, store, force, client, timeout, memory_limit, audit,
                                            finished, bar)
        else:
            analysed, reused = _run_here(paths, options, fx, store, force, jobs, timeout, memory_limit, audit,
                                         finished, bar)
    finally:
        bar.close()
    done = [r for r in results if r is not None]
    captures = schema.frame(CAPTURES_TABLE, [r.capture for r in done])
    flows = _concat(FLOWS_TABLE, [r.flows for r in done])
    findings = _concat(FINDINGS_TABLE, [r.findings for r in done])
    return BatchReport(captures, flows, findings, options, _metadata(fx, options), analysed=analysed,
                       reused=reused)


def _run_on_dask(paths, options: AuditOptions, fx, store, force: bool, client, timeout, memory_limit, audit,
                 finished: Callable[[int, AuditResult], None], bar: _Progress) -> tuple[int, int]:
    """The captures on a Dask cluster: the keys need the content hashes up front, so each file is
    hashed here and cache hits are answered here; the rest run on ``client``, and what they give
    back is stored in the cache. Returns (captures analysed, captures reused from the cache)."""
    reused = 0
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
    return analysed, reused


def _run_here(paths, options: AuditOptions, fx, store, force: bool, jobs: int | None, timeout, memory_limit, audit,
              finished: Callable[[int, AuditResult], None], bar: _Progress) -> tuple[int, int]:
    """The captures in a local pool of ``jobs`` workers (hashing and the cache are the workers').
    Returns (captures analysed, captures reused from the cache)."""
    tasks = [_Task(i, p, None, None) for i, p in enumerate(paths)]
    analysed = reused = 0
    for i, result, was_cached in _run_local(tasks, options, jobs or _default_jobs(), timeout, memory_limit,
                                            audit, store, force, fx.fingerprint, started=bar.start):
        reused += was_cached
        analysed += not was_cached
        finished(i, result)
    return analysed, reused


def _metadata(fx, options: AuditOptions) -> dict[str, str]:
    """The batch's provenance (written beside its tables): versions, profile, snapshot, files."""
    from .. import __version__

    return {
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


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _concat(table, frames: list):
    import pandas as pd

    frames = [f for f in frames if len(f)]
    if not frames:
        return schema.empty(table)
    return schema.conform(table, pd.concat(frames, ignore_index=True))
