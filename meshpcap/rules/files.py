"""Reading the reference files of the rules stage (rule files, service tags, endpoint lists): a file's
bytes and a JSON document's value, each failure one :class:`~meshpcap.errors.RuleError` naming the file;
and TOML documents, kept parsed in the cache directory so that a run needs no TOML parser for files it has
read before (importing ``tomllib`` and compiling its patterns costs more than judging a small capture)."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from meshpcap.errors import RuleError

__all__ = ["parse_json", "read_file", "toml_document", "TomlError"]

FORMAT = 1  # of the cached documents; a new layout names other entries
_TYPE = "\x00toml"  # {"\x00toml": "date", "v": "2024-10-01"}: a TOML value JSON has no type for


class TomlError(ValueError):
    """Not a TOML document; the message is ``tomllib``'s."""


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``; ``RuleError("<path>: cannot read: <why>")`` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise RuleError(str(path), f"cannot read: {exc.strerror or exc}") from None


def parse_json(data: bytes, src: str) -> Any:
    """The JSON value of ``data`` (UTF-8, with or without the BOM PowerShell and Notepad write);
    ``RuleError("<src>: not valid JSON: <why>")`` otherwise."""
    try:
        return json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RuleError(src, f"not valid JSON: {exc}") from None


def toml_document(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, the same value; :class:`TomlError` (tomllib's message) when ``text`` is not TOML.

    The parsed document is kept as JSON (dates, times and date-times tagged) under ``<cache dir>/toml/``,
    named by the sha256 of the text, and read back on the next call with the same text. An entry is used
    only when it reads back whole; one that does not, or a directory that cannot be written, means parsing
    again (and writing again). A document that would not read back equal (a NaN) is not kept."""
    from meshpcap._native import sha256_hex

    entry = _entry(sha256_hex(text.encode("utf-8", "surrogatepass")))
    try:
        doc = json.loads(entry.read_bytes(), object_hook=_decode)
        if isinstance(doc, dict):
            return doc
    except (OSError, ValueError, TypeError, KeyError):
        pass  # no entry, or one that does not read back whole
    import tomllib

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(str(exc)) from None
    _store(entry, doc)
    return doc


def _entry(sha256: str) -> Path:
    from meshpcap import __version__
    from meshpcap.rules.servicetags import cache_dir

    safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in __version__)
    return cache_dir() / "toml" / f"{sha256}-f{FORMAT}-{safe}.json"


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):  # before date: a datetime is a date
        return {_TYPE: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {_TYPE: "date", "v": value.isoformat()}
    if isinstance(value, time):
        return {_TYPE: "time", "v": value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not a TOML value")


_FROM_ISO = {"datetime": datetime.fromisoformat, "date": date.fromisoformat, "time": time.fromisoformat}


def _decode(obj: dict) -> Any:
    kind = obj.get(_TYPE)
    if kind is None:
        return obj
    if len(obj) != 2:
        raise ValueError("not a tagged value")
    return _FROM_ISO[kind](obj["v"])


def _store(entry: Path, doc: dict) -> None:
    """Write ``doc`` for the next run, when it reads back equal; silently nothing when it cannot be written."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        blob = json.dumps(doc, default=_encode, ensure_ascii=False).encode("utf-8")
        if json.loads(blob, object_hook=_decode) != doc:  # a NaN, or a table with a key like the tag
            return
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(blob)
        os.replace(tmp, entry)
    except (OSError, ValueError, TypeError, KeyError):
        try:
            tmp.unlink()
        except OSError:
            pass
