"""Where the captures run: a local process pool of warm workers, or a Dask cluster.  Both call the
same per-capture function; the scheduling is theirs."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

from meshpcap._dataclass import dataclass
from .. import schema
from ..errors import MeshpcapError
from .audit import (FINDINGS_TABLE, FLOWS_TABLE, AuditOptions, AuditResult, _worker_init, audit_isolated, error_result,
                    file_digest)
from .cache import ResultCache

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
