"""The same capture under several profiles, side by side: for each finding, under which profiles it holds.

A finding about flows is the same finding under two profiles when it has the same kind, the same
``blocked_by`` and the same flows (the rule that names it differs from profile to profile: MR-A4 in
``multi-room`` is M365-11 in ``teams``); a DNS finding, by its title; an expected-traffic group, by
its id (``media-relay`` is in every shipped profile). Renderers are pure and return strings.
"""

from __future__ import annotations

import json
from dataclasses import field
from typing import Any

from meshpcap._dataclass import dataclass


def tabulate(*args, **kwargs) -> str:
    """tabulate.tabulate, imported on first use: JSON, CSV and Markdown output do not need it (about 25 ms)."""
    from tabulate import tabulate as table

    return table(*args, **kwargs)


COMPARE_SCHEMA = "meshpcap.compare/1"
ABSENT = "-"


@dataclass(frozen=True, slots=True)
class CompareRow:
    """One finding or expected group and what it is under each profile (``None``: does not hold)."""

    key: str
    kind: str  # blocked | missing | unexpected | degraded | expected
    title: str
    cells: tuple[str | None, ...]  # per profile: severity (findings) or group status (expected)
    ids: tuple[str | None, ...]  # per profile: the finding id (F1, ...) or None

    def holds_under(self, profiles: list[str]) -> list[str]:
        return [p for p, c in zip(profiles, self.cells) if c is not None and c not in ("met",)]

    def to_dict(self, profiles: list[str]) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "title": self.title,
                "under": {p: c for p, c in zip(profiles, self.cells)},
                "finding_ids": {p: i for p, i in zip(profiles, self.ids)},
                "holds_under": self.holds_under(profiles)}


def _finding_key(f) -> str:
    if f.flow_ids:
        return f"{f.kind}|{f.blocked_by or ''}|{','.join(map(str, sorted(f.flow_ids)))}"
    return f"{f.kind}|{f.blocked_by or ''}|{f.title}"


@dataclass(slots=True)
class Comparison:
    """What ``meshpcap.analyze_profiles()`` returns: one Report per profile and the rows comparing them."""

    reports: list
    fail_on: str = "missing"
    rows: list[CompareRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rows:
            self.rows = compare_rows(self.reports)

    @property
    def profiles(self) -> list[str]:
        return [r.profile["id"] for r in self.reports]

    @property
    def verdicts(self) -> dict[str, str]:
        return {r.profile["id"]: r.verdict for r in self.reports}

    @property
    def verdict(self) -> str:
        """The first profile's verdict: the comparison's exit code follows it."""
        return self.reports[0].verdict

    def to_dict(self) -> dict[str, Any]:
        first = self.reports[0]
        return {
            "schema": COMPARE_SCHEMA,
            "capture": first.capture,
            "fail_on": self.fail_on,
            "profiles": [{**r.profile, "verdict": r.verdict, "counts": {**r.judgement.counts,
                                                                         "findings": len(r.judgement.findings)},
                          "findings": [f.to_dict() for f in r.judgement.findings]} for r in self.reports],
            "rows": [row.to_dict(self.profiles) for row in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def __repr__(self) -> str:
        return (f"<meshpcap Comparison {self.reports[0].capture.get('path')}: "
                + ", ".join(f"{p} {v.upper()}" for p, v in self.verdicts.items()) + f"; {len(self.rows)} rows>")


def compare_rows(reports: list) -> list[CompareRow]:
    """Findings (in the order they first appear) then expected groups, across ``reports``."""
    n = len(reports)
    found: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(reports):
        for f in r.judgement.findings:
            k = _finding_key(f)
            entry = found.setdefault(k, {"kind": f.kind, "title": f.title, "cells": [None] * n, "ids": [None] * n})
            if entry["cells"][i] is None:
                entry["cells"][i] = f.severity
                entry["ids"][i] = f.id
    rows = [CompareRow(k, e["kind"], e["title"], tuple(e["cells"]), tuple(e["ids"])) for k, e in found.items()]
    groups: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(reports):
        for g in r.judgement.groups:
            entry = groups.setdefault(g.id, {"title": g.description, "cells": [None] * n})
            entry["cells"][i] = g.status
    rows += [CompareRow(f"expected|{gid}", "expected", f"{gid}: {e['title']}", tuple(e["cells"]), (None,) * n)
             for gid, e in groups.items()]
    return rows


def _cell(row: CompareRow, i: int) -> str:
    c = row.cells[i]
    if c is None:
        return ABSENT if row.kind != "expected" else "(no such group)"
    if row.kind == "expected":
        return c
    return f"{row.ids[i]} {c}" if row.ids[i] else c


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _holds_note(row: CompareRow, profiles: list[str]) -> str:
    under = row.holds_under(profiles)
    if row.kind == "expected":
        return ""
    if len(under) == len(profiles):
        return "all"
    return "only " + ", ".join(under)


def render_compare_table(c: Comparison) -> str:
    profiles = c.profiles
    out = ["COMPARISON: " + "; ".join(f"{p}: {v.upper()}" for p, v in c.verdicts.items())
           + f" (exit code follows {profiles[0]}, --fail-on {c.fail_on})"]
    for r in c.reports:
        for n in r.profile.get("notices", ()):
            out.append(f"NOTE ({r.profile['id']}): {n['text']}")
    out.append(f"capture: {c.reports[0].capture.get('path')}")
    out.append("")
    findings = [row for row in c.rows if row.kind != "expected"]
    head = ["finding", "kind"] + profiles + ["holds under"]
    if findings:
        body = [[_short(row.title), row.kind] + [_cell(row, i) for i in range(len(profiles))]
                + [_holds_note(row, profiles)] for row in findings]
        out.append(tabulate(body, head, tablefmt="simple"))
    else:
        out.append("FINDINGS: none under any profile")
    out.append("")
    groups = [row for row in c.rows if row.kind == "expected"]
    out.append(tabulate([[_short(row.title)] + [_cell(row, i) for i in range(len(profiles))] for row in groups],
                        ["expected traffic"] + profiles, tablefmt="simple") if groups else "EXPECTED TRAFFIC: none")
    return "\n".join(out) + "\n"


def render_compare_markdown(c: Comparison) -> str:
    profiles = c.profiles
    esc = lambda t: t.replace("|", "\\|").replace("*", "\\*")  # noqa: E731
    out = ["# meshpcap: one capture under " + ", ".join(profiles), ""]
    out += [f"- **{p}**: {v.upper()}" for p, v in c.verdicts.items()]
    out += [f"- note ({r.profile['id']}): {esc(n['text'])}" for r in c.reports for n in r.profile.get("notices", ())]
    out += ["", "| finding | kind | " + " | ".join(profiles) + " | holds under |",
            "|---|---|" + "---|" * len(profiles) + "---|"]
    out += [f"| {esc(row.title)} | {row.kind} | " + " | ".join(_cell(row, i) for i in range(len(profiles)))
            + f" | {_holds_note(row, profiles)} |" for row in c.rows if row.kind != "expected"]
    out += ["", "| expected traffic | " + " | ".join(profiles) + " |", "|---|" + "---|" * len(profiles)]
    out += [f"| {esc(row.title)} | " + " | ".join(_cell(row, i) for i in range(len(profiles))) + " |"
            for row in c.rows if row.kind == "expected"]
    return "\n".join(out) + "\n"


def render_compare(c: Comparison, fmt: str) -> str:
    """``table``, ``markdown`` or ``json`` (CSV has no side-by-side form)."""
    renderers = {"table": render_compare_table, "markdown": render_compare_markdown, "json": lambda x: x.to_json()}
    if fmt not in renderers:
        from ..errors import MeshpcapError

        raise MeshpcapError(f"--format {fmt}: several profiles compare as table, markdown or json")
    return renderers[fmt](c)
