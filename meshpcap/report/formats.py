"""The output formats (kept apart so that the CLI can name them without importing the renderers)."""

from __future__ import annotations

from enum import Enum


class FlowFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"
