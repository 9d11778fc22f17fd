"""The optional compiled record walker (``_walk.c``), or None where it is not built.

pcap.py and pcapng.py read :data:`WALK` at each chunk; with None they walk in Python,
with the same results (tests/capture/test_walk_ext.py).  MESHPCAP_PURE_PYTHON=1 ignores
the compiled module."""

from __future__ import annotations

from types import ModuleType

from meshpcap._native import load as _load

ABI = 2  # must equal WALK_ABI in _walk.c


def load() -> ModuleType | None:
    return _load("meshpcap.capture._walk", ABI)


WALK: ModuleType | None = load()
