"""meshpcap: check a packet capture against Microsoft Mesh and Teams firewall requirements."""

from .errors import CaptureError, MeshpcapError, RuleError

__version__ = "0.1.0"

__all__ = ["read_flows", "analyze", "CaptureError", "MeshpcapError", "RuleError", "__version__"]


def read_flows(path, names: bool = True, idle_seconds: float | None = None, batch_bytes: int | None = None,
               max_flows: int | None = None):
    """Read a capture into a :class:`meshpcap.flows.model.FlowTable` (see ``meshpcap.pipeline.read_flows``)."""
    from .pipeline import read_flows as _read_flows

    return _read_flows(path, names=names, idle_seconds=idle_seconds, batch_bytes=batch_bytes, max_flows=max_flows)


def analyze(path, profile: str = "multi-room", **kwargs):
    """Judge a capture against a profile; returns a :class:`meshpcap.report.Report`."""
    from .pipeline import analyze as _analyze

    return _analyze(path, profile=profile, **kwargs)
