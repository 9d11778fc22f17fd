"""The optional compiled record walker (``_walk.c``), or None where it is not built.

pcap.py and pcapng.py read :data:`WALK` at each chunk; with None they walk in Python,
with the same results (tests/capture/test_walk_ext.py).  MESHPCAP_PURE_PYTHON=1 ignores
the compiled module."""

from __future__ import annotations

import os
from types import ModuleType

ABI = 1  # must equal WALK_ABI in _walk.c


def load() -> ModuleType | None:
    if os.environ.get("MESHPCAP_PURE_PYTHON"):
        return None
    try:
        from meshpcap.capture import _walk
    except ImportError:
        return None
    return _walk if getattr(_walk, "ABI", None) == ABI else None


WALK: ModuleType | None = load()
