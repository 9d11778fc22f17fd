"""meshpcap: check a packet capture against Microsoft Mesh and Teams firewall requirements."""

from .errors import CaptureError, MeshpcapError, RuleError

__version__ = "0.1.0"

__all__ = ["read_flows", "analyze", "analyze_many", "write_batch", "CaptureError", "MeshpcapError", "RuleError",
           "__version__"]


def read_flows(path, names: bool = True, idle_seconds: float | None = None, batch_bytes: int | None = None):
    """Read a capture into a :class:`meshpcap.flows.model.FlowTable` (see ``meshpcap.pipeline.read_flows``)."""
    from .pipeline import read_flows as _read_flows

    return _read_flows(path, names=names, idle_seconds=idle_seconds, batch_bytes=batch_bytes)


def analyze(path, profile: str = "multi-room", **kwargs):
    """Judge a capture against a profile; returns a :class:`meshpcap.report.Report`."""
    from .pipeline import analyze as _analyze

    return _analyze(path, profile=profile, **kwargs)


def analyze_many(paths_or_globs, *, jobs=None, client=None, progress=None, cache=None, force=False, timeout=600.0,
                 memory_limit=4 << 30, on_result=None, **analyze_options):
    """Audit many captures (files, globs, directories searched by their bytes); returns a
    :class:`meshpcap.batch.BatchReport` with ``.captures``, ``.flows``, ``.findings`` and
    ``.summary()``.  ``analyze_options`` are :func:`analyze`'s (``profile``, ``service_tags``,
    ``rules`` ...); see ``meshpcap.batch.analyze_many`` for the others."""
    from .batch import analyze_many as _analyze_many

    return _analyze_many(paths_or_globs, jobs=jobs, client=client, progress=progress, cache=cache, force=force,
                         timeout=timeout, memory_limit=memory_limit, on_result=on_result, **analyze_options)


def write_batch(batch, path):
    """Write a BatchReport by the name's extension: ``.parquet`` (a directory of one file per
    table), ``.csv`` or ``.json``; returns the files written."""
    from .batch import write_output

    return write_output(batch, path)
