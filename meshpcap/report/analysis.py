"""The analysis report: a notebook-friendly object and its renderers (table, JSON, CSV, Markdown).

Each renderer is a pure function returning a string; :data:`RENDERERS` lists them all.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from tabulate import tabulate

from ..classify import Judgement
from ..flows.model import FLOW_COLUMNS, FlowTable
from .flows import capture_summary, cell, endpoint, json_indent2, write_json_list
from .formats import ReportFormat

REPORT_SCHEMA = "meshpcap.report/1"
VERDICT_COLUMNS = ("rule", "verdict", "blocked_by", "detail", "confidence", "matched_by", "destination", "tag_verified")
FLOW_REPORT_COLUMNS = tuple(FLOW_COLUMNS) + VERDICT_COLUMNS
FINDING_COLUMNS = ("id", "kind", "severity", "rule", "source", "title", "detail", "fix", "flow_ids", "blocked_by",
                   "destination")


@dataclass(slots=True)
class Report:
    """What ``meshpcap.analyze()`` returns.

    ``flows`` and ``findings`` are pandas DataFrames (columns present even when empty);
    ``verdict`` is "pass" or "fail"; ``to_json()`` gives the ``meshpcap.report/1`` document.
    """

    flow_table: FlowTable
    judgement: Judgement
    profile: dict[str, Any]
    service_tags: dict[str, Any] | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def capture(self) -> dict[str, Any]:
        return self.flow_table.capture

    @property
    def flows(self):
        import pandas as pd

        return pd.DataFrame([v.to_dict() for v in self.judgement.flows], columns=list(FLOW_REPORT_COLUMNS))

    @property
    def findings(self):
        import pandas as pd

        return pd.DataFrame([f.to_dict() for f in self.judgement.findings], columns=list(FINDING_COLUMNS))

    @property
    def checklist(self):
        import pandas as pd

        cols = ["rule", "description", "destination", "ports", "requirement", "status", "flows", "source"]
        return pd.DataFrame([c.to_dict() for c in self.judgement.checklist], columns=cols)

    def to_dict(self, show_unrelated: bool = True) -> dict[str, Any]:
        return {**self._head(), "flows": [v.to_dict() for v in self._flows(show_unrelated)],
                "dns": [e.to_dict() for e in self.flow_table.dns]}

    def _flows(self, show_unrelated: bool):
        return (v for v in self.judgement.flows if show_unrelated or v.verdict != "unrelated")

    def _head(self) -> dict[str, Any]:
        """The document without its flows and DNS events (which come last)."""
        j = self.judgement
        return {
            "schema": REPORT_SCHEMA,
            "capture": self.capture,
            "profile": self.profile,
            "service_tags": self.service_tags,
            "verdict": j.verdict,
            "counts": {**j.counts, "findings": len(j.findings)},
            "findings": [f.to_dict() for f in j.findings],
            "expected": [g.to_dict() for g in j.groups],
            "checklist": [c.to_dict() for c in j.checklist],
            "warnings": list(j.warnings),
        }

    def to_json(self, show_unrelated: bool = True) -> str:
        buf = io.StringIO()
        self.write_json(buf.write, show_unrelated)
        return buf.getvalue()

    def write_json(self, write, show_unrelated: bool = True) -> None:
        """``json.dumps(self.to_dict(show_unrelated), indent=2) + "\\n"``, written a chunk of flows at a
        time (a capture of millions of flows is never held as one text)."""
        head = json_indent2(self._head())
        write(head[:-2] + ',\n  "flows": ')  # the head without its closing "\n}"
        write_json_list((v.to_dict() for v in self._flows(show_unrelated)), "  ", write)
        write(',\n  "dns": ')
        write_json_list((e.to_dict() for e in self.flow_table.dns), "  ", write)
        write("\n}\n")

    def __repr__(self) -> str:
        j = self.judgement
        kinds = {k: sum(1 for f in j.findings if f.kind == k) for k in ("blocked", "missing", "unexpected")}
        return (f"<meshpcap Report {self.capture.get('path')}: {j.verdict.upper()} under {self.profile['id']}; "
                f"{len(j.flows)} flows ({j.counts.get('allowed', 0)} allowed, {j.counts.get('blocked', 0)} blocked, "
                f"{j.counts.get('unexpected', 0)} unexpected); findings: {kinds['blocked']} blocked, "
                f"{kinds['missing']} missing, {kinds['unexpected']} unexpected>")

    def _repr_markdown_(self) -> str:
        return render_markdown(self)


def _headline(r: Report) -> str:
    j = r.judgement
    errors = [f for f in j.findings if f.severity == "error"]
    kinds = {k: sum(1 for f in j.findings if f.kind == k and f.severity != "info")
             for k in ("blocked", "missing", "unexpected")}
    return (f"{j.verdict.upper()}: {kinds['blocked']} blocked, {kinds['missing']} missing, "
            f"{kinds['unexpected']} unexpected ({len(errors)} error{'s' if len(errors) != 1 else ''}) "
            f"under profile {r.profile['id']} ({r.profile.get('date')})")


def _tags_line(r: Report) -> str:
    st = r.service_tags
    if st is None:
        return "service tags: none (AzureCloud membership not verified)"
    return f"service tags: {st.get('file')} (date {st.get('date')}, changeNumber {st.get('change_number')})"


def _flow_rows(r: Report, show_unrelated: bool) -> list[list[Any]]:
    rows = []
    for v in r.judgement.flows:
        if v.verdict == "unrelated" and not show_unrelated:
            continue
        f = v.flow
        rows.append([f.id, f.transport, endpoint(f.server, f.server_port), f.name or "", f.state, v.verdict,
                     v.blocked_by or "", v.rule or ""])
    return rows


FLOW_HEAD = ["id", "proto", "server", "name", "state", "verdict", "blocked by", "rule"]


def render_table(r: Report, show_unrelated: bool = False) -> str:
    j = r.judgement
    out = [_headline(r), ""]
    out.append(f"profile: {r.profile['id']}: {r.profile['title']}")
    out.append(f"source: {r.profile['source']}")
    out.append(_tags_line(r))
    out += capture_summary(r.capture)
    if j.warnings:
        out.append("")
        out.append("WARNINGS")
        out += [f"  ! {w}" for w in j.warnings]
    out.append("")
    if j.findings:
        out.append("FINDINGS")
        for f in j.findings:
            out.append(f"  {f.id} [{f.severity}] {f.kind}: {f.title}")
            if f.rule:
                out.append(f"      rule: {f.rule} ({f.source})")
            out.append(f"      {f.detail}")
            out.append(f"      fix: {f.fix}")
            if f.flow_ids:
                ids = ", ".join(map(str, f.flow_ids[:12])) + (" ..." if len(f.flow_ids) > 12 else "")
                out.append(f"      flows: {ids}")
    else:
        out.append("FINDINGS: none")
    out.append("")
    out.append("EXPECTED TRAFFIC")
    for g in j.groups:
        out.append(f"  {g.status:16} {g.id}: {g.description}" + (f" ({g.detail})" if g.detail else ""))
    out.append("")
    out.append("REQUIREMENTS")
    rows = [[c.status, c.rule, c.ports, _short(c.destination, 60), c.requirement, c.flows] for c in j.checklist]
    out.append(tabulate(rows, ["status", "rule", "ports", "destination", "req", "flows"], tablefmt="simple"))
    out.append("")
    out.append("FLOWS" + ("" if show_unrelated else f" (that matter; {j.counts.get('unrelated', 0)} unrelated not "
                                                     "shown: --show-unrelated)"))
    rows = _flow_rows(r, show_unrelated)
    out.append(tabulate(rows, FLOW_HEAD, tablefmt="simple") if rows else "  (none)")
    return "\n".join(out) + "\n"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def render_markdown(r: Report, show_unrelated: bool = False) -> str:
    j = r.judgement
    out = [f"# meshpcap: {_headline(r)}", ""]
    out.append(f"- capture: `{r.capture.get('path')}` ({r.capture.get('packets')} packets)")
    out.append(f"- profile: **{r.profile['id']}**: {r.profile['title']}; source: {r.profile['source']}")
    out.append(f"- {_tags_line(r)}")
    if j.warnings:
        out += ["", "## Warnings", ""] + [f"- {w}" for w in j.warnings]
    out += ["", "## Findings", ""]
    if not j.findings:
        out.append("None.")
    for f in j.findings:
        out.append(f"### {f.id} ({f.severity}, {f.kind}): {_md(f.title)}")
        out.append("")
        if f.rule:
            out.append(f"- rule: `{f.rule}`: {_md(f.source or '')}")
        out.append(f"- {_md(f.detail)}")
        out.append(f"- **fix:** {_md(f.fix)}")
        if f.flow_ids:
            out.append(f"- flows: {', '.join(map(str, f.flow_ids))}")
        out.append("")
    out += ["## Expected traffic", "", "| status | group | what a working session shows |", "|---|---|---|"]
    out += [f"| {g.status} | {g.id} | {_md(g.description)} |" for g in j.groups]
    out += ["", "## Requirements", "", "| status | rule | ports | destination | req | flows |", "|---|---|---|---|---|---|"]
    out += [f"| {c.status} | {c.rule} | {c.ports} | {_md(c.destination)} | {c.requirement} | {c.flows} |"
            for c in j.checklist]
    out += ["", "## Flows", "", "| " + " | ".join(FLOW_HEAD) + " |", "|" + "---|" * len(FLOW_HEAD)]
    out += ["| " + " | ".join(_md(str(x)) for x in row) + " |" for row in _flow_rows(r, show_unrelated)]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def render_json(r: Report, show_unrelated: bool = True) -> str:
    return r.to_json(show_unrelated)


def render_csv(r: Report, show_unrelated: bool = True) -> str:
    """One row per flow with its verdict (the findings are in the JSON and table outputs)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FLOW_REPORT_COLUMNS)
    for v in r.judgement.flows:
        if v.verdict == "unrelated" and not show_unrelated:
            continue
        d = v.to_dict()
        w.writerow([cell(d[c]) for c in FLOW_REPORT_COLUMNS])
    return buf.getvalue()


RENDERERS = {
    ReportFormat.table: render_table,
    ReportFormat.json: render_json,
    ReportFormat.csv: render_csv,
    ReportFormat.markdown: render_markdown,
}


def render_report(r: Report, fmt: ReportFormat | str, show_unrelated: bool | None = None) -> str:
    fmt = ReportFormat(fmt)
    if show_unrelated is None:
        return RENDERERS[fmt](r)
    return RENDERERS[fmt](r, show_unrelated)
