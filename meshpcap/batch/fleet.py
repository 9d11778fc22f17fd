"""The batch's result: :class:`BatchReport` (three tables) and the fleet view."""

from __future__ import annotations

import os
from dataclasses import field
from pathlib import Path
from typing import Any

from meshpcap._dataclass import dataclass
from .. import schema
from .audit import AuditOptions

# -- the batch -------------------------------------------------------------------------------------

@dataclass(slots=True)
class BatchReport:
    """What :func:`analyze_many` returns: three DataFrames and the fleet view."""

    captures: Any
    flows: Any
    findings: Any
    options: AuditOptions
    metadata: dict[str, str] = field(default_factory=dict)
    analysed: int = 0  # captures analysed in this run
    reused: int = 0  # captures whose cached result was reused

    @property
    def verdict(self) -> str:
        """fail if any capture fails, else error if any could not be audited, else inconclusive if
        any is, else pass (an empty batch is inconclusive)."""
        verdicts = set(self.captures["verdict"].dropna())
        for v in ("fail", "error", "inconclusive"):
            if v in verdicts:
                return v
        return "pass" if verdicts else "inconclusive"

    def summary(self) -> "FleetSummary":
        return fleet_summary(self)

    def tables(self) -> dict[str, Any]:
        return {"captures": self.captures, "flows": self.flows, "findings": self.findings}

    def write(self, path: str | os.PathLike) -> list[Path]:
        """Write the tables by the name's extension (see :func:`meshpcap.batch.output.write_output`)."""
        from .output import write_output

        return write_output(self, path)

    def __repr__(self) -> str:
        counts = self.captures["verdict"].value_counts().to_dict()
        parts = ", ".join(f"{counts.get(v, 0)} {v}" for v in schema.BATCH_VERDICTS)
        return (f"<meshpcap BatchReport: {len(self.captures)} captures ({parts}); {len(self.flows)} flows, "
                f"{len(self.findings)} findings>")


@dataclass(slots=True)
class FleetSummary:
    """The fleet view: verdict counts, which rules fail at how many captures with the worst
    evidence for each, and the captures that are inconclusive or could not be audited."""

    verdicts: dict[str, int]
    rules: Any  # DataFrame: rule, kind, captures, findings, worst_capture, worst_flow, worst_time, title
    inconclusive: list[str]
    errors: list[tuple[str, str]]

    def __str__(self) -> str:
        return render_summary(self)

    def to_dict(self) -> dict[str, Any]:
        rules = []
        for rec in self.rules.to_dict("records"):
            rec = {k: (None if _isna(v) else v) for k, v in rec.items()}
            if rec.get("worst_time") is not None:
                rec["worst_time"] = rec["worst_time"].isoformat()
            rules.append(rec)
        return {"verdicts": self.verdicts, "rules": rules, "inconclusive": self.inconclusive,
                "errors": [{"capture": c, "error": e} for c, e in self.errors]}


def _isna(v) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fleet_summary(batch: BatchReport) -> FleetSummary:
    import pandas as pd

    caps = batch.captures
    verdicts = {v: int((caps["verdict"] == v).sum()) for v in schema.BATCH_VERDICTS}
    f = batch.findings
    failing = f[f["severity"] == "error"].copy()
    rows = []
    if len(failing):
        failing["n_flows"] = failing["flow_ids"].map(lambda x: len(x) if x is not None else 0)
        first_seen = batch.flows.set_index(["capture", "id"])["first_seen"] if len(batch.flows) else None
        for (rule, kind), g in failing.groupby([failing["rule"].fillna(""), "kind"], sort=True):
            worst = g.sort_values(["n_flows", "capture"], ascending=[False, True]).iloc[0]
            flow = worst["flow_ids"][0] if worst["flow_ids"] else None
            when = worst["first_seen"]
            if pd.isna(when) and flow is not None and first_seen is not None:
                when = first_seen.get((worst["capture"], flow), pd.NaT)
            rows.append({"rule": rule or None, "kind": kind, "captures": int(g["capture"].nunique()),
                         "findings": len(g), "worst_capture": worst["capture"], "worst_flow": flow,
                         "worst_flows": int(worst["n_flows"]), "worst_time": when, "title": worst["title"]})
    cols = ["rule", "kind", "captures", "findings", "worst_capture", "worst_flow", "worst_flows", "worst_time", "title"]
    rules = pd.DataFrame(rows, columns=cols)
    if len(rules):
        rules = rules.sort_values(["captures", "findings", "rule"], ascending=[False, False, True], ignore_index=True)
    rules = rules.astype({"captures": "int64", "findings": "int64", "worst_flow": "Int64", "worst_flows": "int64"})
    # NaT where no flow gives a time (a "missing" finding): built as UTC whatever the mix
    rules["worst_time"] = pd.to_datetime(pd.Series(list(rules["worst_time"]), index=rules.index, dtype=object),
                                         utc=True).astype("datetime64[ns, UTC]")
    inconclusive = caps.loc[caps["verdict"] == "inconclusive", "capture"].tolist()
    errors = list(zip(caps.loc[caps["verdict"] == "error", "capture"], caps.loc[caps["verdict"] == "error", "error"]))
    return FleetSummary(verdicts, rules, inconclusive, [(c, e) for c, e in errors])


def render_summary(s: FleetSummary) -> str:
    total = sum(s.verdicts.values())
    out = [f"FLEET: {total} capture{'s' if total != 1 else ''}: "
           + ", ".join(f"{s.verdicts.get(v, 0)} {v}" for v in schema.BATCH_VERDICTS)]
    if len(s.rules):
        out.append("")
        out.append("FAILING RULES (captures, findings, worst evidence)")
        for rec in s.rules.to_dict("records"):
            when = "" if _isna(rec["worst_time"]) else f" at {rec['worst_time'].isoformat()}"
            flow = "" if _isna(rec["worst_flow"]) else f" flow {rec['worst_flow']}"
            n = rec["worst_flows"]
            evidence = (f"worst {rec['worst_capture']}{flow}{when} ({n} flow{'s' if n != 1 else ''})" if n
                        else f"e.g. {rec['worst_capture']}")  # a missing finding rests on no flow
            out.append(f"  {rec['rule'] or '-'} {rec['kind']}: {rec['captures']} capture{'s' if rec['captures'] != 1 else ''}, "
                       f"{rec['findings']} finding{'s' if rec['findings'] != 1 else ''}; {evidence}: {rec['title']}")
    if s.inconclusive:
        out.append("")
        out.append("INCONCLUSIVE")
        out += [f"  {c}" for c in s.inconclusive]
    if s.errors:
        out.append("")
        out.append("ERRORS")
        out += [f"  {c}: {e}" for c, e in s.errors]
    return "\n".join(out) + "\n"
