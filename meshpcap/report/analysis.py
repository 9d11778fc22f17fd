"""The analysis report: a notebook-friendly object and its renderers (table, JSON, CSV, Markdown).

Each renderer is a pure function returning a string; :data:`RENDERERS` lists them all.
"""

from __future__ import annotations

import io
import operator
from dataclasses import field
from dataclasses import fields as dataclass_fields
from itertools import repeat
from operator import attrgetter
from typing import Any, Iterator

from meshpcap._dataclass import dataclass
from ..classify import Judgement
from ..classify.verdicts import Verdicts, notable
from ..flows.model import FLOW_COLUMNS, FlowTable
from ..flows.records import records_from_columns
from .flows import (CHUNK, ORJSON_CHUNK, capture_summary, cell, chunks, endpoint, joined_or_each, json_cells, json_indent2,
                    json_indent2_checked, merged_json, native_is_to_dict, ns_text, split_texts, terminal_cells, write_json_list,
                    write_json_list_checked, write_json_list_text)
from .formats import ReportFormat
from .sanitize import CsvWriter, terminal_text


def tabulate(*args, **kwargs) -> str:
    """tabulate.tabulate, imported on first use: JSON, CSV and Markdown output do not need it (about 25 ms)."""
    from tabulate import tabulate as table

    return table(*args, **kwargs)


REPORT_SCHEMA = "meshpcap.report/2"
VERDICT_COLUMNS = ("rule", "rules", "verdict", "blocked_by", "detail", "confidence", "matched_by", "destination", "tag_verified")
FLOW_REPORT_COLUMNS = tuple(FLOW_COLUMNS) + VERDICT_COLUMNS
assert len(set(FLOW_REPORT_COLUMNS)) == len(FLOW_REPORT_COLUMNS), "FlowVerdict.to_dict adds its keys after the flow's"
FINDING_COLUMNS = ("id", "kind", "severity", "rule", "source", "title", "detail", "fix", "flow_ids", "blocked_by",
                   "destination", "clients", "first_ns", "last_ns")


STREAMS_JSON = "report.streams_json/1"  # the name streams_json's text goes by in MediaResult.rendered


def write_streams_json(media, write) -> None:
    """The report's ``"streams"`` member of a MediaResult as :meth:`Report.write_json` writes it (the list at
    indent 2), a chunk of streams at a time."""
    write_json_list_checked((s.to_dict() for s in media.streams), "  ", write, built=True)


def streams_json(media) -> str:
    """:func:`write_streams_json`'s text as one string: made where the streams are computed, beside the
    naming and judging, when it can be (the pipeline gives it to ``MediaCollector.beside`` as ``STREAMS_JSON``)."""
    out: list[str] = []
    write_streams_json(media, out.append)
    return "".join(out)


@dataclass(slots=True)
class Report:
    """What ``meshpcap.analyze()`` returns.

    ``flows`` and ``findings`` are pandas DataFrames (columns present even when empty);
    ``verdict`` is "pass", "fail" or "inconclusive" (``reason`` says what the capture lacks);
    ``to_json()`` gives the ``meshpcap.report/2`` document.
    """

    flow_table: FlowTable
    judgement: Judgement
    profile: dict[str, Any]
    service_tags: dict[str, Any] | None
    options: dict[str, Any] = field(default_factory=dict)
    quality: Any = None  # meshpcap.classify.quality.Quality, or None when media quality was not measured
    ahead: Any = None  # the flows' JSON texts made ahead (FlowTexts: pipeline.analyzing's json_ahead), or None

    @property
    def verdict(self) -> str:
        return self.judgement.verdict

    @property
    def reason(self) -> str | None:
        """Why the verdict is inconclusive (what the capture lacks), else None."""
        return self.judgement.reason

    @property
    def exit_code(self) -> int:
        """What ``meshpcap analyze`` exits with: 0 pass, 1 fail, 3 inconclusive."""
        return EXIT_CODES[self.judgement.verdict]

    @property
    def capture(self) -> dict[str, Any]:
        return self.flow_table.capture

    # The DataFrames: columns and dtypes from meshpcap.schema (the same for an empty capture
    # and after pd.concat over many).
    @property
    def flows(self):
        from ..flows.model import flow_row
        from ..schema import frame

        rows = []
        for v in self.judgement.flows:
            d = v.to_dict()
            d.update(flow_row(v.flow))
            rows.append(d)
        return frame("report_flows", rows)

    @property
    def findings(self):
        from ..schema import frame

        return frame("findings", [f.to_dict() for f in self.judgement.findings])

    @property
    def streams(self):
        """One row per RTP stream (flow, direction, SSRC): loss, jitter, reordering, bitrate (``STREAM_COLUMNS``)."""
        import pandas as pd

        from ..flows.media import STREAM_COLUMNS

        rows = [] if self.quality is None else [s.to_dict() for s in self.quality.media.streams]
        return pd.DataFrame([[r[c] for c in STREAM_COLUMNS] for r in rows], columns=list(STREAM_COLUMNS))

    @property
    def checklist(self):
        from ..schema import frame

        return frame("checklist", [c.to_dict() for c in self.judgement.checklist])

    def to_dict(self, show_unrelated: bool = True) -> dict[str, Any]:
        return {**self._head(), "flows": [v.to_dict() for v in self._flows(show_unrelated)],
                "dns": [e.to_dict() for e in self.flow_table.dns], **self._tail()}

    def _tail(self) -> dict[str, Any]:
        """Media quality (issue 15): additive sections after the DNS events, absent when not measured."""
        if self.quality is None:
            return {}
        return {"quality": self.quality.to_dict(), "streams": [s.to_dict() for s in self.quality.media.streams]}

    def _flows(self, show_unrelated: bool):
        if show_unrelated:
            return iter(self.judgement.flows)
        # the verdicts left out of notable() are all unrelated: they are never made here
        return (v for v in notable(self.judgement.flows) if v.verdict != "unrelated")

    def _head(self) -> dict[str, Any]:
        """The document without its flows and DNS events (which come last)."""
        j = self.judgement
        return {
            "schema": REPORT_SCHEMA,
            "capture": self.capture,
            "profile": self.profile,
            "service_tags": self.service_tags,
            "verdict": j.verdict,
            "reason": j.reason,
            "headline": _headline(self),  # the one line that agrees with the exit code (renderers show it)
            "fail_on": j.fail_on,
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
        ahead, self.ahead = self.ahead, None  # taken once: a later call makes every text itself
        head = json_indent2_checked(self._head())  # orjson where it writes the same (findings' flow ids by the 10,000)
        write(head[:-2] + ',\n  "flows": ')  # the head without its closing "\n}"
        records = self.flow_table.flows
        if show_unrelated and records_kept(records, self.judgement.flows):
            texts = ahead.rest() if ahead is not None and ahead.of(self.judgement.flows, records) else \
                _verdict_texts(self.judgement.flows, records, "    ")
            write_json_list_text(texts, "  ", write)
        else:
            write_json_list_text((_verdicts_json(part, "    ") for part in chunks(self._flows(show_unrelated), ORJSON_CHUNK)), "  ",
                                 write)
        write(',\n  "dns": ')
        write_json_list((e.to_dict() for e in self.flow_table.dns), "  ", write)
        if self.quality is not None:  # _tail's members, the streams one at a time
            write(',\n  "quality": ' + json_indent2_checked(self.quality.to_dict(), "  ") + ',\n  "streams": ')
            made = self.quality.media.rendered(STREAMS_JSON)
            if isinstance(made, str):
                write(made)
            else:
                write_streams_json(self.quality.media, write)
        write("\n}\n")

    def __repr__(self) -> str:
        j = self.judgement
        kinds = {k: sum(1 for f in j.findings if f.kind == k) for k in ("blocked", "missing", "unexpected")}
        why = f" ({j.reason})" if j.reason else ""
        return terminal_text(  # the capture's file name is text from outside too
            f"<meshpcap Report {self.capture.get('path')}: {j.verdict.upper()}{why} under {self.profile['id']}; "
            f"{len(j.flows)} flows ({j.counts.get('allowed', 0)} allowed, {j.counts.get('blocked', 0)} blocked, "
            f"{j.counts.get('unexpected', 0)} unexpected); findings: {kinds['blocked']} blocked, "
            f"{kinds['missing']} missing, {kinds['unexpected']} unexpected>")

    def _repr_markdown_(self) -> str:
        return render_markdown(self)


class FlowTexts:
    """The JSON texts of a report's flows as :meth:`Report.write_json` writes them with every flow, made ahead a
    piece (at most 256 flows) at a time by :meth:`step`, in time this process would otherwise wait (for the
    media child: ``pipeline.judge_table``); :meth:`rest` gives those made, then makes the others.  The flows'
    verdicts are final when it is made (the media quality adds findings, not verdicts).  Pickled, it holds
    nothing, and is of no report (the texts are made where the report is written)."""

    __slots__ = ("_of", "made", "_texts")

    def __init__(self, verdicts=None, records=None) -> None:
        usable = verdicts is not None and records_kept(records, verdicts)
        self._of = (verdicts, records) if usable else None
        self._texts = _verdict_texts(verdicts, records, "    ") if usable else iter(())
        self.made: list[str] = []

    def of(self, verdicts, records) -> bool:
        """Are these the texts of ``verdicts`` over ``records`` (the very objects)?"""
        return self._of is not None and self._of[0] is verdicts and self._of[1] is records

    def step(self) -> bool:
        """Make the next text; False when none is left to make."""
        text = next(self._texts, None)
        if text is None:
            return False
        self.made.append(text)
        return True

    def rest(self) -> Iterator[str]:
        made, self.made = self.made, []
        yield from made
        yield from self._texts

    def __reduce__(self):
        return (FlowTexts, ())


def records_kept(records, verdicts) -> bool:
    """Can the verdicts' flows be written from the columns of ``records``?  When ``verdicts`` are the
    :class:`~meshpcap.classify.verdicts.Verdicts` judged from ``records`` (a FlowRecords), or when
    ``records`` kept its records (something walked them) and there is one verdict per record."""
    if isinstance(verdicts, Verdicts):
        return verdicts.records is records
    return getattr(records, "kept", None) is not None and len(verdicts) == len(records)


_PLAIN_VERDICT = ("unrelated", None, None, None, "high", None, None, ())
_verdict_fields = attrgetter("verdict", "rule", "blocked_by", "detail", "confidence", "matched_by", "tag_verified",
                             "rules")
_flow_of = attrgetter("flow")
_destination_of = attrgetter("destination")


def _verdict_texts(verdicts, records, ind: str, chunk: int = CHUNK):
    """The JSON texts of ``verdicts`` (one per record of ``records``, in record order) a chunk at a time,
    joined as :func:`write_json_list_text` wants them.

    A verdict that says no more than ``unrelated`` about a plain flow (see FlowRecords.plain_chunk) whose
    destination is its server is written from the columns (a scan's millions of flows): with
    :class:`Verdicts`, where they mark it so (never made); with a list, where it holds such a verdict on
    the very record ``records`` holds at its position.  The others of a chunk are written together, as
    ``FlowVerdict.to_dict`` gives them (:func:`_verdicts_json`)."""
    import numpy as np

    from ..classify.verdicts import FlowVerdict
    from .flows import _plain_flow, plain_template

    template = plain_template(FlowVerdict(_plain_flow(), "unrelated", destination="").to_dict(),
                              lambda d: json_indent2(d, ind), more=("destination",))
    columns = isinstance(verdicts, Verdicts)
    made = verdicts.made.get if columns else None
    kept = records.kept
    sep = ",\n" + ind
    for lo in range(0, len(verdicts), chunk):
        hi = min(lo + chunk, len(verdicts))
        if columns:
            ok = verdicts.unrelated[lo:hi].copy()
            c = records.plain_chunk(lo, hi, records=False) if ok.any() else None  # Verdicts hold the others' flows
        else:
            vs = verdicts[lo:hi]
            c = records.plain_chunk(lo, hi)
            same = map(operator.is_, map(_flow_of, vs), kept[lo:hi])
            plain = map(operator.eq, map(_verdict_fields, vs), repeat(_PLAIN_VERDICT))
            dest_is_server = map(operator.eq, map(_destination_of, vs), c.columns["server"])
            ok = np.fromiter(map(all, zip(same, plain, dest_is_server)), bool, hi - lo)
        if c is not None:
            ok[list(c.special)] = False
        odd = np.flatnonzero(~ok).tolist()
        # Verdicts: a position not marked unrelated is made; a marked one that is not plain is made now
        odd_verdicts = [made(lo + j) or verdicts[lo + j] for j in odd] if columns else [vs[j] for j in odd]
        odd_texts = map(_verdicts_json, chunks(odd_verdicts, ORJSON_CHUNK), repeat(ind))
        if len(odd) == hi - lo:  # no plain one (a session's flows are named)
            yield from odd_texts
            continue
        special = dict(zip(odd, split_texts(odd_texts, ind), strict=True))
        cells = json_cells(c, records, ind)
        cells["destination"] = cells["server"]  # compared with the verdicts' above
        yield template.fill(cells, hi - lo, special, sep)


_VERDICT_ATTRS = tuple("all_rules" if c == "rules" else c for c in VERDICT_COLUMNS)  # each column's attribute
_verdict_values = attrgetter(*_VERDICT_ATTRS)


def _verdict_tail(v) -> dict[str, Any]:
    """What ``v.to_dict()`` adds to its flow's: the verdict's fields (``rules`` as ``all_rules``)."""
    return dict(zip(VERDICT_COLUMNS, _verdict_values(v)))


@dataclass(frozen=True, slots=True)
class _VerdictTail:
    """:func:`_verdict_tail` as a record, its fields in VERDICT_COLUMNS order: what orjson writes of it is the
    dict's text, and the records of a chunk are made from its columns at once (records_from_columns)."""

    rule: Any
    rules: Any
    verdict: Any
    blocked_by: Any
    detail: Any
    confidence: Any
    matched_by: Any
    destination: Any
    tag_verified: Any


assert tuple(f.name for f in dataclass_fields(_VerdictTail)) == VERDICT_COLUMNS, "_VerdictTail: VERDICT_COLUMNS' order"
_VERDICT_GETTERS = tuple(map(attrgetter, _VERDICT_ATTRS))


def _verdict_tails(verdicts: list) -> list:
    """:func:`_verdict_tail` of each verdict, as :class:`_VerdictTail` records made column by column."""
    return records_from_columns(_VerdictTail, [list(map(get, verdicts)) for get in _VERDICT_GETTERS])


def _verdicts_json(verdicts: list, ind: str) -> str:
    """``json_indent2(v.to_dict(), ind)`` of each of ``verdicts``, joined by ``",\n" + ind``: each flow and
    its verdict's fields joined in orjson's text (:func:`merged_json`) where it writes a flow as its to_dict."""
    text = None
    if native_is_to_dict():
        text = merged_json(list(map(_flow_of, verdicts)), _verdict_tails(verdicts), VERDICT_COLUMNS[0], ind)
    return joined_or_each([v.to_dict() for v in verdicts], ind) if text is None else text


EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}  # 2: bad input (the CLI)


def _counted(findings) -> str:
    """``2 blocked, 1 unexpected (warning)``: findings counted by kind, severity named unless error."""
    kinds: dict[tuple[str, str], int] = {}
    for f in findings:
        kinds[(f.kind, f.severity)] = kinds.get((f.kind, f.severity), 0) + 1
    return ", ".join(f"{n} {k}" + ("" if sev == "error" else f" ({sev})") for (k, sev), n in kinds.items())


def _headline(r: Report) -> str:
    """One line that agrees with the exit code: what failed (FAIL), what the capture lacks
    (INCONCLUSIVE), or that nothing fails under --fail-on (PASS); then what does not fail."""
    from ..classify import failing

    j = r.judgement
    under = f"under profile {r.profile['id']} ({r.profile.get('date')})"
    fails = failing(j.findings, j.fail_on)
    failed = set(map(id, fails))  # failing() picks findings by their own fields: 'in' would compare each pair
    rest = [f for f in j.findings if id(f) not in failed]
    others = f"; not failing under --fail-on {j.fail_on}: {_counted(rest)}" if rest else ""
    if j.verdict == "inconclusive":
        return f"INCONCLUSIVE: {j.reason} ({under}){others}"
    if j.verdict == "fail":
        if not fails:
            return f"FAIL: {len(j.warnings)} capture warning(s) under --fail-on warning, {under}"
        return f"FAIL: {_counted(fails)} {under}{others}"
    return f"PASS: nothing fails under --fail-on {j.fail_on}, {under}" + (f"; not failing: {_counted(rest)}"
                                                                           if rest else "")


def _tags_line(r: Report) -> str:
    st = r.service_tags
    if st is None:
        return "service tags: none (AzureCloud membership not verified)"
    how = st.get("date_from")
    if st.get("date") is None:
        date = "unknown: not in the file name, and the changeNumber is not a known snapshot"
    else:
        date = st["date"] + (f" from its {how}" if how else "")
    return f"service tags: {st.get('file')} ({st.get('cloud')} cloud, changeNumber {st.get('change_number')}, date {date})"


def _warnings(r: Report) -> list[str]:
    """The capture's warnings, then the one about the service-tag snapshot's date (reference data)."""
    out = list(r.judgement.warnings)
    if r.service_tags and r.service_tags.get("warning"):
        out.append(r.service_tags["warning"])
    return out


def _flow_rows(r: Report, show_unrelated: bool) -> list[list[Any]]:
    rows = []
    for v in r._flows(show_unrelated):
        f = v.flow
        rows.append([f.id, f.transport, endpoint(f.server, f.server_port), f.name or "", f.state, v.verdict,
                     v.blocked_by or "", v.rule or ""])
    return rows


FLOW_HEAD = ["id", "proto", "server", "name", "state", "verdict", "blocked by", "rule"]


def render_table(r: Report, show_unrelated: bool = False) -> str:
    j = r.judgement
    out = [_headline(r)] + [f"NOTE: {n['text']}" for n in r.profile.get("notices", ())] + [""]
    out.append(f"profile: {r.profile['id']}: {r.profile['title']}")
    out.append(f"source: {r.profile['source']}")
    out.append(_tags_line(r))
    out += capture_summary(r.capture)
    if _warnings(r):
        out.append("")
        out.append("WARNINGS")
        out += [f"  ! {w}" for w in _warnings(r)]
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
            if f.clients:
                out.append(f"      {_who_and_when(f)}")
    else:
        out.append("FINDINGS: none")
    out.append("")
    out.append("EXPECTED TRAFFIC")
    for g in j.groups:
        out.append(f"  {g.status:16} {g.id}: {g.description}" + (f" ({g.detail})" if g.detail else ""))
    out.append("")
    out.append("REQUIREMENTS")
    rows = [[c.status, c.rule, c.ports, _short(c.destination, 60), c.requirement, c.flows] for c in j.checklist]
    out += tabulate(terminal_cells(rows), ["status", "rule", "ports", "destination", "req", "flows"],
                    tablefmt="simple").splitlines()
    out.append("")
    out.append("FLOWS" + ("" if show_unrelated else f" (that matter; {j.counts.get('unrelated', 0)} unrelated not "
                                                     "shown: --show-unrelated)"))
    rows = _flow_rows(r, show_unrelated)
    out += tabulate(terminal_cells(rows), FLOW_HEAD, tablefmt="simple").splitlines() if rows else ["  (none)"]
    out += _quality_lines(r)
    # one item of out is one line: text from the capture (names, certificate issuers, the file
    # name) cannot add a line or send the terminal an escape sequence
    return "\n".join(map(terminal_text, out)) + "\n"


def _who_and_when(f) -> str:
    """``clients: 10.20.0.15; first 2024-...Z, last 2024-...Z`` for a finding that rests on attempts."""
    who = ", ".join(f.clients[:6]) + (f" (+{len(f.clients) - 6} more)" if len(f.clients) > 6 else "")
    return f"client{'s' if len(f.clients) != 1 else ''}: {who}; first {ns_text(f.first_ns)}, last {ns_text(f.last_ns)}"


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def render_markdown(r: Report, show_unrelated: bool = False) -> str:
    """The Markdown report (meshpcap.report.markdown, over the report document), for notebooks' display too."""
    from .markdown import render_markdown as render

    return render(r, show_unrelated)


def _quality_lines(r: Report) -> list[str]:
    q = r.quality
    if q is None or q.verdict == "no media":
        return []
    out = ["", f"MEDIA QUALITY: {q.verdict} (targets: {q.targets.title}, {q.targets.section})"]
    rows = [[s.flow_id, s.direction, f"0x{s.ssrc:08X}", ",".join(map(str, s.payload_types)), s.packets,
             f"{s.lost} ({s.lost_pct:.2f}%)", "" if s.loss_window_pct is None else f"{s.loss_window_pct:.2f}%",
             "" if s.burst_window_pct is None else f"{s.burst_window_pct:.1f}%",
             "" if s.jitter_ms_max is None else f"{s.jitter_ms_max:.1f}", s.reordered, len(s.gaps)]
            for s in q.media.streams]
    if rows:
        out += tabulate(rows, ["flow", "dir", "ssrc", "pt", "pkts", "lost", "loss 15s", "burst 200ms",
                               "jitter max ms", "reord", "gaps"], tablefmt="simple").splitlines()
    else:
        out.append("  no RTP streams in the capture")
    for x in (x for x in q.rtt if x["judged"]):
        out.append(f"  RTT {x['server']}:{x['server_port']} ({', '.join(x['methods'])}): median {x['rtt_ms_median']} ms"
                   f" over {x['samples']}" + (" ok" if x["ok"] else " NOT MET"))
    out += [f"  note: {t}" for t in q.to_dict()["limits"][:1]]
    return out


def render_streams_csv(r: Report) -> str:
    """The media streams table (``Report.streams``) as CSV."""
    from ..flows.media import STREAM_COLUMNS

    buf = io.StringIO()
    w = CsvWriter(buf)
    w.writerow(STREAM_COLUMNS)
    for s in ([] if r.quality is None else r.quality.media.streams):
        d = s.to_dict()
        w.writerow([cell(d[c]) for c in STREAM_COLUMNS])
    return buf.getvalue()


def render_json(r: Report, show_unrelated: bool = True) -> str:
    return r.to_json(show_unrelated)


def render_csv(r: Report, show_unrelated: bool = True) -> str:
    """One row per flow with its verdict (the findings are in the JSON and table outputs)."""
    buf = io.StringIO()
    w = CsvWriter(buf)  # csv.writer(buf, lineterminator="\n") that quotes a lone CR too
    w.writerow(FLOW_REPORT_COLUMNS)
    for v in r._flows(show_unrelated):
        d = v.to_dict()
        w.writerow([cell(d[c]) for c in FLOW_REPORT_COLUMNS])
    return buf.getvalue()


def _render_html(r: Report, show_unrelated: bool = False) -> str:
    from .html import render_html  # jinja2 is imported only for this format

    return render_html(r, show_unrelated)


RENDERERS = {
    ReportFormat.table: render_table,
    ReportFormat.json: render_json,
    ReportFormat.csv: render_csv,
    ReportFormat.markdown: render_markdown,
    ReportFormat.html: _render_html,
}


def render_report(r: Report, fmt: ReportFormat | str, show_unrelated: bool | None = None) -> str:
    fmt = ReportFormat(fmt)
    if show_unrelated is None:
        return RENDERERS[fmt](r)
    return RENDERERS[fmt](r, show_unrelated)
