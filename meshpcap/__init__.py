"""meshpcap: check a packet capture against Microsoft Mesh and Teams firewall requirements."""

from .errors import CaptureError, MeshpcapError, RuleError

__version__ = "0.1.0"

__all__ = ["read_flows", "analyze", "analyze_profiles", "analyze_many", "write_batch", "explain", "CaptureError",
           "MeshpcapError", "RuleError",
           "__version__"]


def read_flows(path, names: bool = True, idle_seconds: float | None = None, batch_bytes: int | None = None,
               max_flows: int | None = None, media=None):
    """Read a capture into a :class:`meshpcap.flows.model.FlowTable` (see ``meshpcap.pipeline.read_flows``);
    ``media=True`` also measures its RTP streams and round-trip times (``FlowTable.media``), so that
    ``analyze(table)`` judges their quality."""
    from .pipeline import read_flows as _read_flows

    return _read_flows(path, names=names, idle_seconds=idle_seconds, batch_bytes=batch_bytes, max_flows=max_flows,
                       media=media)


def analyze(
    source,
    profile: str = "multi-room",
    *,
    profiles=None,
    service_tags=None,
    m365_endpoints=None,
    webslates=(),
    webslate_allow=(),
    cloud_scripting=(),
    rules=None,
    fail_on: str = "missing",
    use_cache: bool = True,
    as_of=None,
    quality: bool = True,
    quality_targets=None,
    max_flows: int | None = None,
):
    """Judge a capture against a profile; returns a :class:`meshpcap.report.analysis.Report`.

    ``source``: a capture path, or a FlowTable from :func:`read_flows` (judge one capture against
    several profiles without reading it again).  ``profile``: a shipped profile id, a TOML file, or
    ``"auto"`` (the profile in force on ``as_of``, default the capture's first packet).
    ``service_tags``: a ServiceTags_Public JSON (default: the cached one unless ``use_cache=False``);
    ``m365_endpoints``: an M365 endpoints JSON; ``webslates``, ``webslate_allow``, ``cloud_scripting``:
    a string or a list of strings; ``rules``: your own TOML rules; ``fail_on``: blocked, missing
    (default), unexpected, degraded, warning or never.  ``quality``/``quality_targets``: measure the
    RTP media streams and judge them against Microsoft's targets (``Report.streams``, ``degraded``
    findings).  ``max_flows``: stop with one clear error past this many flows (None: no limit).  ``.verdict`` is "pass", "fail" or "inconclusive" (see
    ``.reason``).  With ``profiles=[...]`` the capture is judged under each of them instead (read
    once) and a :class:`meshpcap.report.compare.Comparison` is returned, as from :func:`analyze_profiles`.
    """
    options = dict(service_tags=service_tags, m365_endpoints=m365_endpoints, webslates=webslates,
                   webslate_allow=webslate_allow, cloud_scripting=cloud_scripting, rules=rules, fail_on=fail_on,
                   use_cache=use_cache, as_of=as_of, quality=quality, quality_targets=quality_targets,
                   max_flows=max_flows)
    if profiles is not None:
        return analyze_profiles(source, profiles, **options)
    from .pipeline import analyze as _analyze

    return _analyze(source, profile, **options)


def analyze_profiles(source, profiles, **kwargs):
    """Judge one capture (path or FlowTable, read once) under several profiles; returns a
    :class:`meshpcap.report.compare.Comparison` (side-by-side findings, one Report per profile)."""
    from .pipeline import analyze_profiles as _analyze_profiles

    return _analyze_profiles(source, profiles, **kwargs)


def explain(path, flow_id: int, profile: str = "multi-room", **kwargs):
    """Everything known about one flow (packets, handshake, DNS, rule, verdict, reasoning, Wireshark's
    view): a dict, see ``meshpcap.pipeline.explain``; ``meshpcap.report.explain.render_text`` prints it."""
    from .pipeline import explain as _explain

    return _explain(path, flow_id, profile=profile, **kwargs)


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
