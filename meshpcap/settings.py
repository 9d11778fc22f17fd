"""Every environment switch meshpcap reads, in one place, read once (README "Switches").

Modules ask :func:`get` for the :class:`Settings`; nothing else in the package reads
``os.environ`` for a switch.  Tests change them with :func:`override` (or set the variable and
call :func:`reload`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import fields, replace
from typing import Iterator

from meshpcap._dataclass import dataclass

GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class Settings:
    """The switches; the README's table lists each with its variable and default."""

    no_fork: bool = False
    """MESHPCAP_NO_FORK=1: never fork a second process (reading, naming)."""
    no_mmap: bool = False
    """MESHPCAP_NO_MMAP=1: read plain files with read calls, never map them."""
    pure_python: bool = False
    """MESHPCAP_PURE_PYTHON=1: ignore the compiled helpers (their pure-Python twins run)."""
    max_decompressed: int = 64 * GIB
    """MESHPCAP_MAX_DECOMPRESSED: bytes a gzip/zstd capture may decompress to (0: no limit)."""
    max_ratio: int = 200
    """MESHPCAP_MAX_RATIO: decompressed bytes per compressed byte allowed once more than
    :data:`RATIO_FLOOR` bytes came out (0: no limit); real captures compress 2-20x, bombs 1000x."""


RATIO_FLOOR = 32 << 20  # the ratio limit applies after this many decompressed bytes

_VARS = {
    "no_fork": "MESHPCAP_NO_FORK",
    "no_mmap": "MESHPCAP_NO_MMAP",
    "pure_python": "MESHPCAP_PURE_PYTHON",
    "max_decompressed": "MESHPCAP_MAX_DECOMPRESSED",
    "max_ratio": "MESHPCAP_MAX_RATIO",
}

_current: Settings | None = None


def _size(text: str, name: str, default: int) -> int:
    """``123``, ``64M``, ``2G`` (binary units); a value that does not parse keeps the default."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if t and t[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(t[-1]) + 1))
        t = t[:-1]
    try:
        value = int(float(t) * mult)
    except ValueError:
        return default
    return max(value, 0)


def from_environ(environ: dict[str, str] | os._Environ = os.environ) -> Settings:
    """The settings the environment asks for (unset or empty: the default)."""
    base = Settings()
    values = {}
    for f in fields(Settings):
        raw = environ.get(_VARS[f.name])
        if not raw:
            continue
        default = getattr(base, f.name)
        if isinstance(default, bool):
            values[f.name] = raw.strip().lower() not in ("0", "false", "no", "off")
        else:
            values[f.name] = _size(raw, _VARS[f.name], default)
    return replace(base, **values)


def get() -> Settings:
    """The settings of this process (read from the environment at the first call)."""
    global _current
    if _current is None:
        _current = from_environ()
    return _current


def reload() -> Settings:
    """Read the environment again (tests that set a variable)."""
    global _current
    _current = from_environ()
    return _current


@contextmanager
def override(**changes: object) -> Iterator[Settings]:
    """Within the block, :func:`get` returns the current settings with ``changes``."""
    global _current
    saved = get()
    _current = replace(saved, **changes)
    try:
        yield _current
    finally:
        _current = saved


def variables() -> dict[str, str]:
    """Field name -> environment variable (the README's table is checked against it)."""
    return dict(_VARS)
