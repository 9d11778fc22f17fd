"""The list of shipped rule sets (``meshpcap profiles``) as a table, JSON or CSV, from the rows of
:func:`meshpcap.rules.periods.profile_period` (when each was in force, with the source of each date)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

__all__ = ["render_profiles"]


def render_profiles(rows: list[dict[str, Any]], fmt: str = "table") -> str:
    """``rows`` (one dict per profile) in ``fmt``: ``table`` (a summary line each, then each profile's
    sources, dates and notes), ``json`` (the rows as they are) or ``csv`` (their scalar fields)."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        return _csv(rows)
    return _table(rows)


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    scalar = [k for k, v in rows[0].items() if not isinstance(v, (dict, list))] if rows else ["id"]
    w = csv.DictWriter(buf, fieldnames=scalar, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows({k: ("true" if v is True else "false" if v is False else v) for k, v in d.items()} for d in rows)
    return buf.getvalue()


_DATES = (("valid_from", "valid from"), ("superseded_on", "superseded on"), ("retired_on", "retired on"))


def _table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    summary = [[d["id"] + (" (default)" if d["default"] else ""), d["date"], d["in_force"], d["rules"], d["title"]]
               for d in rows]
    out = [tabulate(summary, ["profile", "date", "in force", "rules", "title"], tablefmt="simple")]
    for d in rows:
        out += ["", f"{d['id']}: {d['source']}"]
        for key, label in _DATES:
            if d[key]:
                by = d.get(key.replace("_on", "_by")) if key != "valid_from" else None
                out.append(f"  {label} {d[key]}" + (f" (then: {by})" if by else "") + f": {d[key + '_source']}")
        if d["endpoints"]:
            e = d["endpoints"]
            out.append(f"  endpoint files: {e['combine']} ({', '.join(e['selects'])})"
                       + (f"; shipped rows: version {e['version']} ({e['file']})" if e["version"] else ""))
        if d["notes"]:
            out.append(f"  notes: {d['notes']}")
    return "\n".join(out) + "\n"
