"""Loading the optional compiled helpers (``capture/_walk.c``, ``decode/_headers.c``).

Each has a pure-Python twin that gives the same results; a helper that is missing, was
built for another ABI version (a stale in-place build), or is switched off with
MESHPCAP_PURE_PYTHON=1 is None and the twin runs instead."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(name: str, abi: int) -> ModuleType | None:
    if os.environ.get("MESHPCAP_PURE_PYTHON"):
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if getattr(module, "ABI", None) == abi else None
