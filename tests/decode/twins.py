"""A parser run twice, with its compiled fast path and without it (tests/decode/test_*_ext.py)."""

from __future__ import annotations

from meshpcap.decode.buffer import DecodeError


def both_ways(module, compiled, parse, data) -> tuple:
    """(what ``parse(data)`` gives or raises with ``module._COMPILED`` set to ``compiled``, and with it None):
    ("ok", value), or (the error's class, its message): NeedMore and DecodeError must agree too."""
    got = []
    saved = module._COMPILED
    try:
        for helper in (compiled, None):
            module._COMPILED = helper
            try:
                got.append(("ok", parse(data)))
            except DecodeError as exc:
                got.append((type(exc), str(exc)))
    finally:
        module._COMPILED = saved
    return tuple(got)
