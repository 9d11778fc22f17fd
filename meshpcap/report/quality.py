"""The media-quality part of the HTML and Markdown reports, computed from the report document's
``quality`` and ``streams`` sections (issue 15): the targets with their source, what one capture point
cannot see, the streams that missed a target, the ``degraded`` findings with stream, window and measured
value against the target, round-trip times per server, and the geometry of one inline-SVG plot per stream.

Pure functions of the document (STYLE lesson 14): the page draws what is here, no script needed.

What a plot shows is what the streams table holds: the bitrate, the loss and the jitter per bin
(``bitrate_series``, ``loss_series_pct``, ``jitter_series_ms``: 1 s bins) as curves, broken where a bin had
no packet, the gaps where media stopped, and for packet loss (15 s), burst loss (200 ms) and jitter (15 s)
the *worst* window the targets are judged on (``loss_window_pct``/``loss_window_ns`` and so on), drawn
where it fell against the dashed target line, with the stream's mean jitter.  Burst loss has no curve:
its 200 ms window is finer than the bins.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..flows.media import MediaOptions

STREAM_PLOTS = 40  # streams drawn at most (those that missed a target first); the table lists more
STREAM_ROWS = 300  # streams listed in the page's streams table at most
RTT_ROWS = 40  # servers listed with their round-trip times at most (not met first, then STUN-measured ones)
PLOT_POINTS = 300  # points per curve at most (consecutive bins averaged, for loss and jitter their highest taken)

# the metric a target judges -> the streams-table fields of its worst window (value, [start, end] ns)
WINDOW_FIELDS = {"loss_pct": ("loss_window_pct", "loss_window_ns"),
                 "burst_loss_pct": ("burst_window_pct", "burst_window_ns"),
                 "jitter_ms": ("jitter_window_ms", "jitter_window_ns")}
LANE_TITLES = {"loss_pct": "loss %", "burst_loss_pct": "burst loss %", "jitter_ms": "jitter ms"}
# the metric a lane judges -> the streams-table series drawn in it as a curve (one value per bitrate bin)
SERIES_FIELDS = {"loss_pct": ("loss_series_pct", "loss % per {bin} s bin"),
                 "jitter_ms": ("jitter_series_ms", "highest jitter (ms) in each {bin} s bin")}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}%" if unit == "%" else f"{value:.1f} {unit}"


def _rel(ns: int | None, t0: int | None) -> str:
    if ns is None:
        return "-"
    if t0 is None:
        return f"{ns} ns"
    return f"+{(ns - t0) / 1e9:.3f} s"


def stream_name(s: dict) -> str:
    """As ``MediaStream.name`` (the ``stream`` of a ``quality.streams`` entry)."""
    ep = lambda a, p: f"[{a}]:{p}" if ":" in str(a) else f"{a}:{p}"  # noqa: E731
    return f"flow {s['flow_id']} {s['direction']} SSRC {s['ssrc']} {ep(s['src'], s['src_port'])} -> " \
           f"{ep(s['dst'], s['dst_port'])}"


def plot_id(s: dict) -> str:
    """The HTML id of a stream's plot (flow, direction and SSRC: unique in a report)."""
    return f"stream-{s['flow_id']}-{s['direction']}-{s['ssrc']}"


def _targets(q: dict) -> dict[str, dict]:
    return {t["id"]: t for t in (q.get("targets") or {}).get("targets") or []}


def _holds(t: dict, value: float) -> bool:
    return value < t["limit"] if t.get("op", "<") == "<" else value <= t["limit"]


def source_text(q: dict) -> str:
    t = q.get("targets") or {}
    return f"Microsoft, \"{t.get('title')}\" ({t.get('date') or 'undated'}), {t.get('section')}; {t.get('url')}"


def window_text(window: list[int] | None, t0: int | None) -> str:
    if not window:
        return "-"
    return f"{_rel(window[0], t0)} .. {_rel(window[1], t0)}"


def degraded_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each ``degraded`` finding with what it is about (stream or server), the window, the measured value
    and the target, read from the quality section and the streams table."""
    q = doc.get("quality") or {}
    t0 = (doc.get("capture") or {}).get("first_ns")
    targets = _targets(q)
    streams = {stream_name(s): s for s in doc.get("streams") or []}
    judged = {r["stream"]: r for r in q.get("streams") or []}
    out = []
    for f in doc.get("findings") or []:
        if f.get("kind") != "degraded":
            continue
        tid = (f.get("rule") or "").removeprefix("quality:")
        t = targets.get(tid) or {}
        unit = t.get("unit", "")
        row = {"id": f["id"], "severity": f.get("severity"), "target": t.get("text") or tid,
               "limit": f"{t.get('op', '<')} {fmt(t.get('limit'), unit)}" if t else "", "subject": f.get("title"),
               "window": "-", "measured": "-", "title": f.get("title"), "plot": None}
        # a stream finding's title names the stream: "... on <stream name> (target ..."
        name = next((n for n in judged if f" on {n} (target" in (f.get("title") or "")), None)
        if name is not None:
            s = streams.get(name) or {}
            res = judged[name]["results"].get(tid) or {}
            row["subject"] = name
            row["plot"] = plot_id(s) if s else None
            row["measured"] = fmt(res.get("value"), unit)
            wf = WINDOW_FIELDS.get(t.get("metric"))
            if wf is not None:
                row["window"] = (f"{t['window_ms'] / 1000:g} s window " if t.get("window_ms") else "") + \
                    window_text(s.get(wf[1]), t0)
            elif s:
                row["window"] = "whole stream " + window_text([s["first_ns"], s["last_ns"]], t0)
        else:
            rtt = next((r for r in q.get("rtt") or [] if r.get("flow_ids") == f.get("flow_ids")
                        and r.get("server") == f.get("destination")), None)
            if rtt is not None:
                row["subject"] = f"server {rtt['server']}:{rtt['server_port']} ({rtt['transport']})"
                row["measured"] = fmt(rtt["rtt_ms_median"], "ms") + f" (median of {rtt['samples']})"
                row["window"] = "whole capture (" + ", ".join(rtt.get("methods") or []) + ")"
        out.append(row)
    return out


def missed_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stream and target that the stream missed or could not be judged on."""
    q = doc.get("quality") or {}
    targets = _targets(q)
    out = []
    for r in q.get("streams") or []:
        for tid, res in (r.get("results") or {}).items():
            if res.get("ok"):
                continue
            t = targets.get(tid) or {}
            unit = t.get("unit", "")
            out.append({"stream": r["stream"], "scope": r.get("scope"), "target": t.get("text") or tid,
                        "measured": fmt(res.get("value"), unit) if res.get("value") is not None
                        else f"not judged: {res.get('why')}",
                        "ok": res.get("ok"), "limit": f"{t.get('op', '<')} {fmt(t.get('limit'), unit)}" if t else ""})
    return out


def rtt_ranked(doc: dict[str, Any], limit: int = RTT_ROWS) -> list[dict[str, Any]]:
    """The servers listed: those that missed the target first, then those measured by STUN (relays), the
    slowest first; a capture with thousands of TCP handshakes lists the rest in the embedded document."""
    rtt = (doc.get("quality") or {}).get("rtt") or []
    order = sorted(range(len(rtt)), key=lambda i: (not (rtt[i].get("judged") and not rtt[i].get("ok")),
                                                   rtt[i].get("methods") == ["TCP handshake"],
                                                   -rtt[i]["rtt_ms_median"], i))
    return [rtt[i] for i in order[:limit]]


def rtt_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in rtt_ranked(doc):
        status = "not judged" if not r.get("judged") else ("met" if r.get("ok") else "not met")
        rows.append({"server": f"[{r['server']}]:{r['server_port']}" if ":" in r["server"]
                     else f"{r['server']}:{r['server_port']}", "transport": r.get("transport"),
                     "methods": ", ".join(r.get("methods") or []), "samples": r.get("samples"),
                     "min": f"{r['rtt_ms_min']:.1f}", "median": f"{r['rtt_ms_median']:.1f}",
                     "max": f"{r['rtt_ms_max']:.1f}", "one_way": f"{r['latency_ms_estimate']:.1f}",
                     "status": status, "flows": ", ".join(map(str, (r.get("flow_ids") or [])[:10]))})
    return rows


def stream_rows(doc: dict[str, Any], limit: int = STREAM_ROWS) -> list[list[str]]:
    rows = []
    for s in (doc.get("streams") or [])[:limit]:
        rows.append([str(s["flow_id"]), s["direction"], s["ssrc"], s.get("framing") or "",
                     ",".join(map(str, s.get("payload_types") or [])), str(s["packets"]),
                     f"{s['lost']} ({s['lost_pct']:.2f}%)", fmt(s.get("loss_window_pct"), "%"),
                     fmt(s.get("burst_window_pct"), "%"),
                     "-" if s.get("jitter_ms_mean") is None else f"{s['jitter_ms_mean']:.1f} / {s['jitter_ms_max']:.1f}",
                     str(s.get("reordered")), "-" if s.get("bitrate_kbps") is None else f"{s['bitrate_kbps']:.1f}",
                     str(len(s.get("gaps") or []))])
    return rows


STREAM_HEAD = ["flow", "dir", "SSRC", "framing", "PT", "packets", "lost", "worst 15 s loss", "worst 200 ms burst",
               "jitter mean / max ms", "reordered", "kbit/s", "gaps"]


# ---------------------------------------------------------------- one plot per stream

def nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``raw`` (axis steps and tops)."""
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _bin_ns(s: dict) -> float:
    """The bitrate bin: the media pass's default unless the series' length says otherwise (a targets
    file may set another; the document does not carry it)."""
    span = s["last_ns"] - s["first_ns"]
    n = len(s.get("bitrate_series") or [])
    b = MediaOptions().bitrate_bin_ms * 1e6
    if n and span // int(b) + 1 != n:
        b = span / max(n - 0.5, 0.5)
    return b


def bitrate_points(s: dict, limit: int = PLOT_POINTS) -> list[tuple[int, float]]:
    """(ns, kbit/s) at the middle of each bitrate bin (of its covered part for the last one); more than
    ``limit`` bins are averaged in runs of consecutive ones."""
    return series_points(s, "bitrate_series", limit, lambda c: sum(c) / len(c))  # type: ignore[return-value]


def series_points(s: dict, key: str, limit: int = PLOT_POINTS, agg=max) -> list[tuple[int, float | None]]:
    """(ns, value) at the middle of each bin of the series ``key`` (of its covered part for the last one),
    None where the bin had no packet; more than ``limit`` bins are taken in runs of consecutive ones, each
    run's value ``agg`` of its values (the highest by default: a peak stays visible against the target)."""
    series = list(s.get(key) or [])
    if not series:
        return []
    b = _bin_ns(s)
    k = max(1, math.ceil(len(series) / limit))
    out = []
    for i in range(0, len(series), k):
        chunk = [v for v in series[i:i + k] if v is not None]
        start = s["first_ns"] + i * b
        end = min(s["first_ns"] + (i + min(k, len(series) - i)) * b, s["last_ns"])
        out.append((int((start + max(end, start)) / 2), agg(chunk) if chunk else None))
    return out


def curve_path(points: list[tuple[float, float | None]]) -> str:
    """SVG path data through (x, y) points, broken where y is None; a point alone is a zero-length
    segment (drawn as a dot by the round line cap)."""
    parts: list[str] = []
    run: list[str] = []
    for x, y in points + [(0.0, None)]:
        if y is not None:
            run.append(f"{x},{y}")
            continue
        if run:
            parts.append(f"M{run[0]}" + (" L" + " ".join(run[1:]) if len(run) > 1 else " h0"))
        run = []
    return " ".join(parts)


def stream_plot(s: dict, doc: dict[str, Any]) -> dict[str, Any]:
    """Geometry of one stream's SVG: a bitrate lane (one point per bin), and a lane per judged target
    (loss, burst loss, jitter) with the target line and the worst window; gaps shaded across all lanes."""
    q = doc.get("quality") or {}
    t0 = (doc.get("capture") or {}).get("first_ns")
    s0, s1 = s["first_ns"], s["last_ns"]
    span = max(s1 - s0, 1)
    left, width, right = 130, 600, 300
    total = left + width + right

    def x(ns: float) -> float:
        return round(left + (min(max(ns, s0), s1) - s0) / span * width, 1)

    lanes = [_bitrate_lane(s, x, 8)]
    y = 8 + lanes[0]["h"] + 10
    by_metric = {t["metric"]: t for t in (q.get("targets") or {}).get("targets") or [] if t.get("judged", True)}
    for metric in ("loss_pct", "burst_loss_pct", "jitter_ms"):
        t = by_metric.get(metric)
        if t is None:
            continue
        lane = _target_lane(s, metric, t, x, y, t0)
        lanes.append(lane)
        y += lane["h"] + 10
    bottom = y - 10
    gaps = [{"x": x(g["start_ns"]), "w": max(round(x(g["start_ns"] + g["ms"] * 1e6) - x(g["start_ns"]), 1), 1.0),
             "title": f"media stopped for {g['ms']:.0f} ms at {_rel(g['start_ns'], t0)}"} for g in s.get("gaps") or []]
    return {"name": stream_name(s), "id": plot_id(s), "lanes": lanes, "gaps": gaps,
            "ticks": _stream_ticks(s0, s1, t0, x), "left": left, "width": width,
            "total": total, "top": 8, "bottom": bottom, "height": bottom + 22, "points": lanes[0]["count"],
            "caption": _stream_caption(s, t0)}


def _bitrate_lane(s: dict, x: Callable[[float], float], y: int) -> dict[str, Any]:
    """The bitrate lane: one point per bin (or per average of a run of bins), with mean and max."""
    pts = bitrate_points(s)
    top_rate = nice_step(max((v for _, v in pts), default=0.0) or 1.0)
    h = 46
    return {
        "kind": "bitrate", "y": y, "h": h, "label": "kbit/s", "max": f"{top_rate:g}", "window": None, "mean": None,
        "points": " ".join(f"{x(ns)},{round(y + h - v / top_rate * h, 1)}" for ns, v in pts),
        "count": len(pts),
        "text": (f"mean {s['bitrate_kbps']:.1f} kbit/s" if s.get("bitrate_kbps") is not None else "bitrate -")
                + (f", max {s['bitrate_max_kbps']:.1f}" if s.get("bitrate_max_kbps") is not None else ""),
        "title": f"bitrate per {_bin_ns(s) / 1e9:g} s bin: {len(s.get('bitrate_series') or [])} bins"
                 + (f" (drawn as {len(pts)} averages)" if len(pts) < len(s.get("bitrate_series") or []) else ""),
    }


def _target_lane(s: dict, metric: str, t: dict, x: Callable[[float], float], y: int, t0: int | None) -> dict[str, Any]:
    """One judged target's lane: the target line, the per-bin curve, the worst window and the mean."""
    vf, wf = WINDOW_FIELDS[metric]
    value, window = s.get(vf), s.get(wf)
    unit = t["unit"]
    mean = s.get("jitter_ms_mean") if metric == "jitter_ms" else None
    sf = SERIES_FIELDS.get(metric)
    cpts = series_points(s, sf[0]) if sf else []
    cmax = max((v for _, v in cpts if v is not None), default=0.0)
    top = nice_step(max(2 * t["limit"], (value or 0) * 1.15, mean or 0, cmax) or 1.0)
    h = 30
    lane = {"kind": metric, "y": y, "h": h, "label": LANE_TITLES[metric], "max": f"{top:g}",
            "target_y": round(y + h - t["limit"] / top * h, 1), "target": f"target {t['op']} {fmt(t['limit'], unit)}",
            "window": None, "mean": None, "curve": None}
    drawn = [(x(ns), None if v is None else round(y + h - min(v / top, 1.0) * h, 1)) for ns, v in cpts]
    if any(v is not None for _, v in drawn):
        n_bins = len(s.get(sf[0]) or [])
        lane["curve"] = {"d": curve_path(drawn), "count": sum(v is not None for _, v in drawn),
                         "title": sf[1].format(bin=f"{_bin_ns(s) / 1e9:g}") + f": {n_bins} bins, highest "
                         f"{fmt(cmax, unit)}" + (f" (drawn as {len(cpts)} highest of runs)"
                                                 if len(cpts) < n_bins else "")}
    if value is None or not window:
        why = s.get("clock_source") if metric == "jitter_ms" else "too few packets"
        lane["text"] = f"not judged ({why})"
    else:
        ok = _holds(t, value)
        wx0, wx1 = x(window[0]), x(window[1])
        vh = max(round(value / top * h, 1), 1.0)
        lane["window"] = {"x": wx0, "w": max(round(wx1 - wx0, 1), 2.0), "y": round(y + h - vh, 1), "h": vh,
                          "ok": ok, "title": f"worst {t['window_ms'] / 1000:g} s window: {fmt(value, unit)} "
                          f"({window_text(window, t0)}); {t['text']}" if t.get("window_ms") else
                          f"worst window: {fmt(value, unit)}; {t['text']}"}
        lane["text"] = f"worst {fmt(value, unit)} ({'met' if ok else 'NOT MET'}, {lane['target']})"
    if mean is not None:
        lane["mean"] = {"y": round(y + h - min(mean / top, 1.0) * h, 1), "title": f"mean jitter {mean:.1f} ms"}
    return lane


def _stream_ticks(s0: int, s1: int, t0: int | None, x: Callable[[float], float]) -> list[dict[str, Any]]:
    """Ticks in seconds from the start of the capture (as on the timeline), about 6 of them."""
    span = max(s1 - s0, 1)
    base = t0 if t0 is not None else s0
    step = nice_step(span / 1e9 / 6)
    first = math.ceil((s0 - base) / 1e9 / step) * step
    ticks = []
    v = first
    while v * 1e9 + base <= s1 + 1 and len(ticks) < 20:
        ticks.append({"x": x(base + v * 1e9), "label": f"{v:g} s"})
        v += step
    return ticks


def _stream_caption(s: dict, t0: int | None) -> str:
    """The line under a stream's plot: counts, clock and time span."""
    return (f"{s['packets']} packets, {s['lost']} lost of {s['expected']} ({s['lost_pct']:.2f}%), "
            f"{s.get('loss_bursts', 0)} loss burst(s), {s.get('reordered', 0)} reordered, "
            f"{s.get('duplicates', 0)} duplicated, {len(s.get('gaps') or [])} gap(s); clock "
            f"{s.get('clock_rate') or 'unknown'} ({s.get('clock_source')}); "
            f"{_rel(s['first_ns'], t0)} .. {_rel(s['last_ns'], t0)}")


def plotted_streams(doc: dict[str, Any], limit: int = STREAM_PLOTS) -> list[dict]:
    """The streams drawn: those that missed a target first, then the others, in flow order."""
    missed = {r["stream"] for r in (doc.get("quality") or {}).get("streams") or []}
    streams = doc.get("streams") or []
    ranked = sorted(range(len(streams)), key=lambda i: (stream_name(streams[i]) not in missed, i))[:limit]
    return [streams[i] for i in sorted(ranked)]


def quality_view(doc: dict[str, Any]) -> dict[str, Any] | None:
    """Everything the reports show about media quality; None when it was not measured (--no-quality)."""
    q = doc.get("quality")
    if q is None:
        return None
    streams = doc.get("streams") or []
    plotted = plotted_streams(doc)
    drawn = {plot_id(s) for s in plotted}
    degraded = degraded_rows(doc)
    for d in degraded:
        if d["plot"] not in drawn:
            d["plot"] = None
    return {
        "verdict": q.get("verdict"), "source": source_text(q), "targets": (q.get("targets") or {}).get("targets") or [],
        "scope": (q.get("targets") or {}).get("scope"), "file": (q.get("targets") or {}).get("file"),
        "limits": q.get("limits") or [], "judged": q.get("streams_judged", 0), "met": q.get("streams_met", 0),
        "missed": missed_rows(doc), "degraded": degraded, "rtt": rtt_rows(doc),
        "rtt_total": len(q.get("rtt") or []),
        "stream_head": STREAM_HEAD, "stream_rows": stream_rows(doc), "streams_total": len(streams),
        "plots": [stream_plot(s, doc) for s in plotted], "plots_omitted": len(streams) - len(plotted),
    }
