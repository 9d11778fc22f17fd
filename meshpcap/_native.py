"""Loading the optional compiled helpers (``capture/_walk.c``, ``decode/_headers.c``, ``flows/_group.c``,
``decode/_media.c``, ``decode/_tls.c``, ``decode/_dns.c``).

Each has a pure-Python twin that gives the same results; a helper that is missing, was
built for another ABI version or from another version of its source (a stale in-place
build: its SOURCE_HASH differs from the hash of the ``.c`` file beside it), or is switched
off with MESHPCAP_PURE_PYTHON=1 is None and the twin runs instead."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

try:  # the interpreter's own SHA-256 (as the random module takes its SHA-512): importing hashlib loads
    from _sha2 import sha256  # OpenSSL, about 2 ms of every start, for hashing a few small files
except ImportError:  # Python 3.11
    try:
        from _sha256 import sha256
    except ImportError:  # pragma: no cover - a Python built without them
        from hashlib import sha256


def sha256_hex(data: bytes) -> str:
    """``hashlib.sha256(data).hexdigest()``, without loading OpenSSL (for small inputs: it is slower on
    megabytes)."""
    return sha256(data).hexdigest()


def source_hash(text: bytes) -> str:
    """The hash hatch_build.py compiles into a helper (SOURCE_HASH) of its source."""
    return sha256_hex(text)[:16]


def is_current(module: ModuleType) -> bool:
    """Was ``module`` built from the ``.c`` file beside it (when that file is there to compare)?"""
    built = getattr(module, "SOURCE_HASH", "")
    source = Path(module.__file__ or "").parent / (module.__name__.rsplit(".", 1)[-1] + ".c")
    try:
        text = source.read_bytes()
    except OSError:
        return True  # an installed wheel may ship without sources: nothing to compare
    return not built or built == source_hash(text)


def load(name: str, abi: int) -> ModuleType | None:
    from meshpcap import settings

    if settings.get().pure_python:
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return module if getattr(module, "ABI", None) == abi and is_current(module) else None
