"""Reading the reference files of the rules stage (rule files, service tags, endpoint lists): a file's
bytes and a JSON document's value, each failure one :class:`~meshpcap.errors.RuleError` naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from meshpcap.errors import RuleError

__all__ = ["parse_json", "read_file"]


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
