"""Errors meshpcap raises: one per stage, each printable as a single line."""

from __future__ import annotations


class MeshpcapError(Exception):
    """Base class: the CLI prints str(exc) on one line and exits 2."""


class CaptureError(MeshpcapError):
    """The capture file as a whole cannot be read (missing, not a capture, header cut)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class RuleError(MeshpcapError):
    """A rule file, profile, service-tag or endpoints file is invalid."""

    def __init__(self, source: str, problem: str, rule: str | None = None, field: str | None = None) -> None:
        self.source = str(source)
        self.rule = rule
        self.field = field
        self.problem = problem
        where = self.source
        if rule is not None:
            where += f": rule '{rule}'"
        if field is not None:
            where += f": {field}"
        super().__init__(f"{where}: {problem}")
