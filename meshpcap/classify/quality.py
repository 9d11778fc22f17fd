"""Media quality judged against Microsoft's published network targets: `degraded` findings and the
report's ``quality`` section.

The targets are data (``rules/quality/teams-client-edge.toml``: each metric's limit, comparison,
window and Microsoft's wording, with the document it comes from), validated when loaded; this module
only compares the measurements of :mod:`meshpcap.flows.media` with them.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import field, replace
from pathlib import Path
from typing import Any

from meshpcap._dataclass import dataclass
from ..errors import RuleError
from ..flows.media import MediaOptions, MediaResult, MediaStream, ServerRtt
from ..rules.files import TomlError, toml_document
from .findings import Finding, Judgement, failing
from .verdicts import Verdicts, notable

METRICS = ("latency_one_way_ms", "rtt_ms", "burst_loss_pct", "loss_pct", "jitter_ms", "reorder_pct")
SEVERITIES = ("error", "warning", "info")

# what a single capture point can and cannot see (said in every report that has a quality section)
LIMITS_OF_ONE_CAPTURE_POINT = (
    "Loss, jitter and reordering are measured on the path from each stream's sender to the capture point. "
    "Loss beyond the capture point (for media the captured side sends, everything downstream of it) is "
    "invisible here; only the receiver's RTCP reports would show it, and SRTCP encrypts them (RFC 3711: only "
    "the first 8 bytes of an SRTCP packet are in the clear).",
    "One-way latency cannot be measured from one capture point: it is shown as RTT / 2, an estimate, and not "
    "judged.",
    "Round-trip times are from the capture point to the server (STUN request to response, TCP SYN to SYN-ACK); "
    "they equal the client's only when the capture runs on or next to the client.",
    "Only RTP headers are read (SRTP encrypts the payload); a dynamic payload type's clock rate is inferred "
    "from how fast its timestamps advance, and a stream whose clock cannot be inferred has no jitter.",
)


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    metric: str
    op: str  # "<" or "<="
    limit: float
    unit: str
    text: str
    window_ms: float | None = None
    judged: bool = True

    def holds(self, value: float) -> bool:
        return value < self.limit if self.op == "<" else value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "metric": self.metric, "op": self.op, "limit": self.limit, "unit": self.unit,
                "window_ms": self.window_ms, "judged": self.judged, "text": self.text}


@dataclass(frozen=True, slots=True)
class Targets:
    path: str
    title: str
    section: str
    url: str
    date: str | None
    scope: str
    targets: tuple[Target, ...]
    options: MediaOptions
    severity: str = "warning"

    @property
    def source(self) -> str:
        return f"Microsoft, \"{self.title}\" ({self.date}), {self.section}; {self.url}"

    def get(self, metric: str) -> Target | None:
        return next((t for t in self.targets if t.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "title": self.title, "section": self.section, "url": self.url, "date": self.date,
                "scope": self.scope, "targets": [t.to_dict() for t in self.targets]}


def default_targets_path() -> Path:
    from ..rules.load import profiles_dir

    return profiles_dir() / "quality" / "teams-client-edge.toml"


def load_targets(path: str | Path | None = None) -> Targets:
    """Read and validate a quality targets file (the shipped Teams client-to-edge one by default).
    Raises :class:`meshpcap.errors.RuleError` naming the file, the target and the field."""
    p = Path(path) if path is not None else default_targets_path()
    # the shipped file is named as in the source tree, so that reports do not depend on where it is installed
    src = str(p) if path is not None else "rules/quality/teams-client-edge.toml"
    try:
        doc = toml_document(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RuleError(src, f"cannot read: {exc.strerror or exc}") from None
    except (TomlError, UnicodeDecodeError) as exc:
        raise RuleError(src, f"not valid TOML: {exc}") from None
    s = doc.get("source")
    if not isinstance(s, dict):
        raise RuleError(src, "a [source] table is required (title, section, url, date)")
    for k in ("title", "section", "url"):
        if not isinstance(s.get(k), str) or not s[k].strip():
            raise RuleError(src, "must be a non-empty string", field=f"source.{k}")
    date = s.get("date")
    if date is not None and not isinstance(date, _dt.date):
        raise RuleError(src, "must be a TOML date (YYYY-MM-DD)", field="source.date")
    st = doc.get("streams", {})
    if not isinstance(st, dict):
        raise RuleError(src, "must be a table", field="streams")
    opts = MediaOptions()
    changes = {}
    for k, kind in (("min_packets", int), ("gap_ms", (int, float)), ("min_window_packets", int),
                    ("bitrate_bin_ms", (int, float))):
        if k in st:
            v = st[k]
            if isinstance(v, bool) or not isinstance(v, kind) or v <= 0:
                raise RuleError(src, "must be a positive number", field=f"streams.{k}")
            changes[k] = v
    unknown = set(st) - {"min_packets", "gap_ms", "min_window_packets", "bitrate_bin_ms"}
    if unknown:
        raise RuleError(src, f"unknown key(s): {', '.join(sorted(unknown))}", field="streams")
    severity = doc.get("findings", {}).get("severity", "warning")
    if severity not in SEVERITIES:
        raise RuleError(src, f"'{severity}' is not one of {', '.join(SEVERITIES)}", field="findings.severity")
    raw = doc.get("target")
    if not isinstance(raw, list) or not raw:
        raise RuleError(src, "at least one [[target]] is required")
    targets = []
    seen: set[str] = set()
    for i, t in enumerate(raw):
        tid = t.get("id") if isinstance(t, dict) else None
        if not isinstance(tid, str) or not tid:
            raise RuleError(src, "must be a non-empty string", rule=f"#{i + 1}", field="id")
        if tid in seen:
            raise RuleError(src, "duplicate target id", rule=tid, field="id")
        seen.add(tid)
        unknown = set(t) - {"id", "metric", "op", "limit", "unit", "text", "window_ms", "judged"}
        if unknown:
            raise RuleError(src, f"unknown key(s): {', '.join(sorted(unknown))}", rule=tid)
        if t.get("metric") not in METRICS:
            raise RuleError(src, f"'{t.get('metric')}' is not one of {', '.join(METRICS)}", rule=tid, field="metric")
        if t.get("op", "<") not in ("<", "<="):
            raise RuleError(src, f"'{t.get('op')}' is not '<' or '<='", rule=tid, field="op")
        lim = t.get("limit")
        if isinstance(lim, bool) or not isinstance(lim, (int, float)) or lim < 0:
            raise RuleError(src, "must be a number >= 0", rule=tid, field="limit")
        win = t.get("window_ms")
        if win is not None and (isinstance(win, bool) or not isinstance(win, (int, float)) or win <= 0):
            raise RuleError(src, "must be a positive number of milliseconds", rule=tid, field="window_ms")
        for k in ("unit", "text"):
            if not isinstance(t.get(k), str) or not t[k]:
                raise RuleError(src, "must be a non-empty string", rule=tid, field=k)
        if not isinstance(t.get("judged", True), bool):
            raise RuleError(src, "must be true or false", rule=tid, field="judged")
        targets.append(Target(tid, t["metric"], t.get("op", "<"), float(lim), t["unit"], t["text"],
                              None if win is None else float(win), t.get("judged", True)))
    by_metric = {t.metric: t for t in targets}
    for metric, opt in (("loss_pct", "loss_window_ms"), ("burst_loss_pct", "burst_window_ms"),
                        ("jitter_ms", "jitter_window_ms")):
        if metric in by_metric and by_metric[metric].window_ms:
            changes[opt] = by_metric[metric].window_ms
    return Targets(src, s["title"], s["section"], s["url"], date.isoformat() if date else None,
                   s.get("scope", ""), tuple(targets), replace(opts, **changes), severity)


@dataclass(slots=True)
class Quality:
    """The judged media: the report's ``quality`` section and its ``degraded`` findings."""

    targets: Targets
    media: MediaResult
    findings: list[Finding] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # per stream: each target's value and outcome
    rtt: list[dict[str, Any]] = field(default_factory=list)
    verdict: str = "no media"  # met | not met | no media

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "targets": self.targets.to_dict(),
            "limits": list(LIMITS_OF_ONE_CAPTURE_POINT),
            "streams_judged": len(self.results),
            "streams_met": sum(1 for r in self.results if all(x["ok"] for x in r["results"].values())),
            # streams that missed a target or could not be judged on one (the rest met every target)
            "streams": [r for r in self.results if not all(x["ok"] for x in r["results"].values())],
            "rtt": self.rtt,
            "degraded": [f.id for f in self.findings],
        }


def _ns_text(ns: int, t0: int | None) -> str:
    return f"{(ns - t0) / 1e9:.3f} s" if t0 is not None else f"{ns} ns"


def _fmt(v: float, unit: str) -> str:
    return f"{v:.3g}{unit}" if unit == "%" else f"{v:.1f} {unit}"


def judge_quality(media: MediaResult, judgement: Judgement, targets: Targets,
                  capture_first_ns: int | None = None) -> Quality:
    """Compare every stream and every measured server with the targets; one ``degraded`` finding per
    stream (or server) and target that is not met."""
    verdicts = judgement.flows  # one per flow, in record order: flow id i at i - 1 (there may be millions)
    under_rule: set[int] | None = None  # only where a verdict is not at its id's place
    q = Quality(targets, media)
    findings: list[Finding] = []

    def scope_of(fid: int) -> str:
        nonlocal under_rule
        if isinstance(verdicts, Verdicts):  # by position, no record made (flow id i is at i - 1)
            return "microsoft-edge" if verdicts.rule_of(fid) else "other"
        if under_rule is None:
            if 0 < fid <= len(verdicts) and verdicts[fid - 1].flow.id == fid:
                return "microsoft-edge" if verdicts[fid - 1].rule else "other"
            # only the notable verdicts can be under a rule (the others are 'unrelated', not made)
            under_rule = {v.flow.id for v in notable(verdicts) if v.rule}
        return "microsoft-edge" if fid in under_rule else "other"

    stream_targets = {m: targets.get(m) for m in ("loss_pct", "burst_loss_pct", "jitter_ms", "reorder_pct")}
    for s in media.streams:
        res: dict[str, Any] = {"stream": s.name, "flow_id": s.flow_id, "direction": s.direction,
                               "ssrc": f"0x{s.ssrc:08X}", "scope": scope_of(s.flow_id), "results": {}}
        checks = (("loss_pct", s.loss_window_pct, s.loss_window_ns), ("burst_loss_pct", s.burst_window_pct,
                  s.burst_window_ns), ("jitter_ms", s.jitter_window_ms, s.jitter_window_ns),
                  ("reorder_pct", s.reordered_pct, (s.first_ns, s.last_ns)))
        for metric, value, window in checks:
            t = stream_targets[metric]
            if t is None:
                continue
            if value is None or not t.judged:
                why = ("no RTP clock rate: " + s.clock_source) if metric == "jitter_ms" else "too few packets"
                res["results"][t.id] = {"value": None, "ok": None, "why": why}
                continue
            ok = t.holds(value)
            res["results"][t.id] = {"value": round(float(value), 4), "ok": ok}  # windows: in the streams table
            if not ok:
                findings.append(_stream_finding(s, t, float(value), window, targets, res["scope"], capture_first_ns))
        q.results.append(res)
    rtt_t = targets.get("rtt_ms")
    lat_t = targets.get("latency_one_way_ms")
    media_flows = {s.flow_id for s in media.streams}
    for r in media.rtt:
        relevant = any(scope_of(f) == "microsoft-edge" or f in media_flows for f in r.flow_ids)
        row = r.to_dict()
        row["judged"] = bool(relevant and rtt_t is not None and rtt_t.judged)
        row["ok"] = rtt_t.holds(r.rtt_ms_median) if row["judged"] else None
        if lat_t is not None:
            row["latency_target"] = lat_t.text + (" (not judged: one-way delay is not visible from one capture "
                                                  "point)" if not lat_t.judged else "")
        q.rtt.append(row)
        if row["judged"] and not row["ok"]:
            findings.append(_rtt_finding(r, rtt_t, targets))
    base = len(judgement.findings)
    q.findings = [replace(f, id=f"F{base + i}") for i, f in enumerate(findings, start=1)]
    if media.streams or any(r["judged"] for r in q.rtt):
        q.verdict = "not met" if q.findings else "met"
    return q


def _stream_finding(s: MediaStream, t: Target, value: float, window, targets: Targets, scope: str,
                    t0: int | None) -> Finding:
    where = ""
    if window and t.metric != "reorder_pct":
        where = f" in the {t.window_ms / 1000:g} s window from {_ns_text(window[0], t0)} to {_ns_text(window[1], t0)}"
    what = {"loss_pct": "packet loss", "burst_loss_pct": "burst packet loss", "jitter_ms": "jitter (RFC 3550)",
            "reorder_pct": "packet reordering"}[t.metric]
    title = f"{what} {_fmt(value, t.unit)} on {s.name} (target {t.op} {_fmt(t.limit, t.unit)})"
    detail = (f"{what} measured {_fmt(value, t.unit)}{where}; Microsoft's target: {t.text}. Stream: {s.packets} "
              f"packets, {s.lost} lost of {s.expected} expected ({s.lost_pct:.2f}%), {s.loss_bursts} loss burst(s), "
              f"{s.reordered} reordered, {s.duplicates} duplicated, jitter mean "
              + (f"{s.jitter_ms_mean:.1f} ms" if s.jitter_ms_mean is not None else "unknown")
              + f" ({s.clock_source}).")
    if scope != "microsoft-edge":
        detail += " This flow is not to a Microsoft endpoint of the profile (the targets are for client to edge)."
    detail += " " + LIMITS_OF_ONE_CAPTURE_POINT[0].split(". ")[0] + "."
    fix = ("find where the packets are lost or delayed between the sender and the capture point: Wi-Fi, a "
           "saturated uplink, a VPN or proxy in the media path, or missing QoS (DSCP EF for audio); send Teams "
           "media directly to the Microsoft edge, not through the VPN tunnel or a TLS-inspecting proxy")
    return Finding("", "degraded", targets.severity, f"quality:{t.id}", targets.source, title, detail, fix,
                   (s.flow_id,), None, s.dst if s.direction == "c2s" else s.src)


def _rtt_finding(r: ServerRtt, t: Target, targets: Targets) -> Finding:
    title = (f"round-trip time {r.rtt_ms_median:.1f} ms (median of {r.samples}) to {r.server}:{r.server_port} "
             f"(target {t.op} {t.limit:g} ms)")
    detail = (f"{', '.join(r.methods)}: min {r.rtt_ms_min:.1f} ms, median {r.rtt_ms_median:.1f} ms, max "
              f"{r.rtt_ms_max:.1f} ms; Microsoft's target: {t.text}. One-way latency estimate (RTT / 2): "
              f"{r.rtt_ms_median / 2:.1f} ms. {LIMITS_OF_ONE_CAPTURE_POINT[2]}")
    fix = ("shorten the path to the Microsoft edge: local internet breakout for Teams media instead of "
           "backhauling through a VPN or a distant proxy; check the route and the DNS resolver's location")
    return Finding("", "degraded", targets.severity, f"quality:{t.id}", targets.source, title, detail, fix,
                   r.flow_ids, None, r.server)


def add_to_judgement(judgement: Judgement, quality: Quality, fail_on: str) -> None:
    """Append the ``degraded`` findings; the verdict becomes fail when they reach ``fail_on``."""
    judgement.findings.extend(quality.findings)
    if failing(quality.findings, fail_on):
        judgement.verdict = "fail"
