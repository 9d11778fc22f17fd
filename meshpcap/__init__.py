"""meshpcap: check a packet capture against Microsoft Mesh and Teams firewall requirements."""

from .errors import CaptureError, MeshpcapError, RuleError

__version__ = "0.1.0"

__all__ = ["read_flows", "analyze", "analyze_profiles", "CaptureError", "MeshpcapError", "RuleError", "__version__"]


def read_flows(path, names: bool = True, idle_seconds: float | None = None, batch_bytes: int | None = None):
    """Read a capture into a :class:`meshpcap.flows.model.FlowTable` (see ``meshpcap.pipeline.read_flows``)."""
    from .pipeline import read_flows as _read_flows

    return _read_flows(path, names=names, idle_seconds=idle_seconds, batch_bytes=batch_bytes)


def analyze(path, profile: str = "multi-room", profiles=None, **kwargs):
    """Judge a capture against a profile; returns a :class:`meshpcap.report.Report`.

    With ``profiles=[...]`` the capture is judged under each of them instead (read once) and a
    :class:`meshpcap.report.compare.Comparison` is returned, as from :func:`analyze_profiles`."""
    if profiles is not None:
        return analyze_profiles(path, profiles, **kwargs)
    from .pipeline import analyze as _analyze

    return _analyze(path, profile=profile, **kwargs)


def analyze_profiles(source, profiles, **kwargs):
    """Judge one capture (path or FlowTable, read once) under several profiles; returns a
    :class:`meshpcap.report.compare.Comparison` (side-by-side findings, one Report per profile)."""
    from .pipeline import analyze_profiles as _analyze_profiles

    return _analyze_profiles(source, profiles, **kwargs)
