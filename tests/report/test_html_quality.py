"""The media-quality section of the HTML and Markdown reports (meshpcap.report.quality): the targets with
their source, the limits of one capture point, the degraded findings with stream, window and measured value
against the target, RTT per server, and one inline-SVG plot per stream with one bitrate point per bin.

The call is built with known impairments (tests/media_builders.py) beside the healthy sample's packets; the
expected numbers are worked out here from the generator's parameters."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

import meshpcap
from meshpcap.capture import open_capture
from meshpcap.report.html import read_embedded, render_html, render_html_document
from meshpcap.report.markdown import render_markdown, render_markdown_document
from tests.builders import SEC, write_pcap
from tests.conftest import SAMPLES
from tests.media_builders import Call, eth_udp
from tests.report.test_html import BREAKOUT, IMG, SCRIPT, parse

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
HEALTHY = SAMPLES / "healthy-multi-room.pcapng"
RELAY = ("52.113.144.132", 3478)  # the healthy sample's relay (AzureCloud in the sample tags)
CLIENT = ("10.20.0.15", 59400)

# up: 20 ms packets, 12 lost in a row (240 ms), the sender pauses for 50 packets (1 s) later on
UP = dict(count=1000, lost=set(range(300, 312)), gap=(600, 50))
# down: 60 ms packets, every odd one from 101 to 199 arrives 50 ms late: |D| = 50 ms, jitter far over 30 ms
DOWN = dict(ssrc=0x5555, interval_ns=60_000_000, count=300, delay_ns={i: 50_000_000 for i in range(101, 200, 2)})


def bins(call: Call) -> int:
    """Bitrate bins of 1 s from the first to the last arrival (the last packet is neither lost nor late)."""
    span = (call.count - 1 + (call.gap[1] if call.gap else 0)) * call.interval_ns
    return span // SEC + 1


@lru_cache(maxsize=1)
def built(tmp: str) -> tuple[Path, Call, Call]:
    pkts = []
    with open_capture(HEALTHY) as cap:
        for b in cap.batches():
            for i in range(len(b)):
                o, c = int(b.offset[i]), int(b.caplen[i])
                pkts.append((int(b.ts_ns[i]), bytes(b.data[o:o + c])))
    start = pkts[0][0] + 100_000_000
    up, down = Call(start_ns=start, **UP), Call(start_ns=start + 7_000_000, **DOWN)
    for at, _i, seq, ts in up.packets():
        pkts.append((at, eth_udp(*CLIENT, *RELAY, up.payload(seq, ts))))
    for at, _i, seq, ts in down.packets():
        pkts.append((at, eth_udp(*RELAY, *CLIENT, down.payload(seq, ts))))
    pkts.sort(key=lambda p: p[0])
    return write_pcap(Path(tmp) / "call.pcap", pkts), up, down


@pytest.fixture(scope="module")
def call(tmp_path_factory):
    path, up, down = built(str(tmp_path_factory.mktemp("mq")))
    r = meshpcap.analyze(path, service_tags=TAGS, use_cache=False)
    return r, up, down


def section(text: str, sid: str) -> str:
    i = text.index(f'<section id="{sid}">')
    return text[i:text.index("</section>", i)]


def plots(text: str) -> list[str]:
    return re.findall(r'<svg class="stream".*?</svg>', section(text, "media-quality"), re.S)


def test_page_shows_the_quality_section_and_a_plot_per_stream(call):
    r, up, down = call
    text = render_html(r)
    doc = read_embedded(text)
    q = doc["quality"]
    assert q["verdict"] == "not met"
    mq = section(text, "media-quality")
    shown = "".join(parse(mq).text)
    # the verdict, the targets with their source, the limits of one capture point
    assert "not met" in shown and "https://learn.microsoft.com/microsoftteams/prepare-network" in shown
    assert "Prepare your organization's network for Microsoft Teams" in shown and "2024-06-25" in shown
    for limit in q["limits"]:
        assert limit in shown
    # each degraded finding: stream, window, measured value, target
    deg = [f for f in doc["findings"] if f["kind"] == "degraded"]
    assert sorted(f["rule"] for f in deg) == ["quality:burst-loss", "quality:jitter", "quality:packet-loss"]
    rows = re.findall(r"<tr[^>]*><td><a href=\"#finding-(F\d+)\">.*?</tr>", section(text, "media-quality"), re.S)
    assert rows == [f["id"] for f in deg]
    up_s = next(s for s in doc["streams"] if s["src_port"] == CLIENT[1])
    loss = next(f for f in deg if f["rule"] == "quality:packet-loss")
    row = re.search(rf'#finding-{loss["id"]}".*?</tr>', mq, re.S)[0]
    # 12 lost in the worst 15 s window: the first one, holding 15 s / 20 ms less the 50 of the pause
    assert f"{100 * 12 / (750 - 50):.3g}%" in row and "Packet loss &lt; 1% during any 15 s interval" in row
    assert "SSRC 0x11223344" in row and "15 s window +" in row
    anchor = f"stream-{up_s['flow_id']}-c2s-0x11223344"
    assert f'<a href="#{anchor}">' in row and f'id="{anchor}"' in mq  # to its plot
    burst = next(f for f in deg if f["rule"] == "quality:burst-loss")
    assert "100%" in re.search(rf'#finding-{burst["id"]}".*?</tr>', mq, re.S)[0]  # 10 of 10 in 200 ms lost
    jit = re.search(rf'#finding-{next(f for f in deg if f["rule"] == "quality:jitter")["id"]}".*?</tr>', mq, re.S)[0]
    assert "SSRC 0x00005555" in jit and "Packet inter-arrival jitter" in jit
    # RTT per server: the sample's STUN transactions with the relay
    rtt = section(text, "media-quality").split('id="quality-rtt"')[1].split("</table>")[0]
    relay = next(x for x in q["rtt"] if x["server"] == RELAY[0] and x["server_port"] == RELAY[1])
    assert f"{RELAY[0]}:{RELAY[1]}" in rtt and f"{relay['rtt_ms_median']:.1f}" in rtt
    # one plot per stream, one bitrate point per 1 s bin, the gap shaded, worst windows drawn
    svgs = plots(text)
    assert len(svgs) == len(doc["streams"]) == 4  # the two built ones and the sample's relay stream both ways
    by_ssrc = {s["ssrc"]: svg for s, svg in zip(doc["streams"], svgs)}
    for call_, ssrc in ((up, "0x11223344"), (down, "0x00005555")):
        svg = by_ssrc[ssrc]
        points = re.search(r'<polyline class="rate" points="([^"]*)"', svg)[1].split()
        assert len(points) == bins(call_) == int(re.search(r'data-points="(\d+)"', svg)[1])
        xs = [float(p.split(",")[0]) for p in points]
        assert xs == sorted(xs)
    assert (bins(up), bins(down)) == (21, 18)
    assert by_ssrc["0x11223344"].count('class="gap"') == len(up_s["gaps"]) == 1
    assert "media stopped for 1020 ms" in by_ssrc["0x11223344"]  # (1 + 50) * 20 ms
    assert by_ssrc["0x11223344"].count('class="w-bad"') == 2  # loss and burst loss missed
    assert by_ssrc["0x00005555"].count('class="w-bad"') == 1  # jitter missed
    # the plots are SVG the page draws without script: no script or foreign element inside
    assert all("<script" not in s and "<foreignObject" not in s for s in svgs)


def lane(svg: str, kind: str) -> str:
    return re.search(rf'<g class="lane lane-{kind}">.*?</g>', svg, re.S)[0]


def curve(svg: str, kind: str) -> tuple[list[tuple[float, float]], int, int, tuple[float, float]]:
    """A lane's curve: its points, the count it declares, its runs, and the lane's top and bottom y."""
    g = lane(svg, kind)
    m = re.search(r'<path class="curve" d="([^"]*)" data-points="(\d+)">', g)
    frame = re.search(r'<rect class="frame" x="[^"]*" y="([^"]*)" width="[^"]*" height="([^"]*)"/>', g)
    top = float(frame[1])
    pts = [(float(a), float(b)) for a, b in re.findall(r"(-?[\d.]+),(-?[\d.]+)", m[1])]
    return pts, int(m[2]), m[1].count("M"), (top, top + float(frame[2]))


def occupied(call: Call) -> list[int]:
    """The 1 s bins (from the first arrival) in which packets of the call arrive."""
    arr = call.packets()
    return sorted({(at - arr[0][0]) // SEC for at, *_ in arr})


def test_plots_draw_loss_and_jitter_per_bin(call):
    r, up, down = call
    svgs = plots(render_html(r))
    by_ssrc = {s.ssrc: svg for s, svg in zip(r.quality.media.streams, svgs)}
    up_svg, down_svg = by_ssrc[up.ssrc], by_ssrc[down.ssrc]
    # up: 21 bins, second 12 empty (the sender paused from 12 s to 13 s): 20 points in two runs
    pts, count, runs, (y0, y1) = curve(up_svg, "loss_pct")
    assert occupied(up) == [b for b in range(bins(up)) if b != 12]
    assert len(pts) == count == len(occupied(up)) == 20 and runs == 2
    # the 12 lost (300-311) fall in second 6, which expects 300-349: 24%, the lane's top is 50%
    loss6 = 100 * len(UP["lost"]) / (SEC // up.interval_ns)
    assert loss6 == 24.0 and re.search(r'text-anchor="end">50<', lane(up_svg, "loss_pct"))
    assert pts[6][1] == pytest.approx(y1 - loss6 / 50 * (y1 - y0), abs=0.1)
    assert all(p[1] == y1 for i, p in enumerate(pts) if i != 6)  # no loss anywhere else
    xs = [p[0] for p in pts]
    assert xs == sorted(xs)
    # the worst-window marks, the target line and the gap stay
    assert 'class="w-bad"' in lane(up_svg, "loss_pct") and 'class="target"' in lane(up_svg, "loss_pct")
    assert up_svg.count('class="gap"') == 1
    # down: 18 bins with packets; jitter 0 until the late packets start (101 at 6.06 s), above target then
    pts, count, runs, (y0, y1) = curve(down_svg, "jitter_ms")
    assert len(pts) == count == len(occupied(down)) == bins(down) == 18 and runs == 1
    target_y = float(re.search(r'<line class="target"[^>]* y1="([^"]*)"', lane(down_svg, "jitter_ms"))[1])
    assert all(p[1] == y1 for p in pts[:6]) and all(p[1] < target_y for p in pts[7:12])
    # burst loss (200 ms) has no per-bin curve; its lane keeps the worst window
    assert "<path" not in lane(up_svg, "burst_loss_pct") and 'class="w-bad"' in lane(up_svg, "burst_loss_pct")


def test_markdown_has_the_same_quality_section(call):
    r, up, down = call
    out = render_markdown(r)
    mq = out.split("## Media quality", 1)[1].split("\n## ", 1)[0]
    doc = r.to_dict(False)
    assert "not met" in mq and "prepare-network" in mq
    deg = [f for f in doc["findings"] if f["kind"] == "degraded"]
    for f in deg:
        assert f"| {f['id']} |" in mq
    assert f"{100 * 12 / (750 - 50):.3g}%" in mq and "SSRC 0x11223344" in mq
    assert f"{RELAY[0]}:{RELAY[1]}" in mq  # RTT per server
    assert "SRTCP" in mq  # the limits of one capture point


def test_no_quality_no_section(tmp_path):
    r = meshpcap.analyze(HEALTHY, service_tags=TAGS, quality=False, use_cache=False)
    text = render_html(r)
    assert 'id="media-quality"' not in text and "## Media quality" not in render_markdown(r)


def test_hostile_strings_in_the_quality_section_stay_text(call):
    r, _, _ = call
    doc = json.loads(json.dumps(r.to_dict(False)))
    q = doc["quality"]
    q["targets"]["title"] = SCRIPT
    q["targets"]["targets"][0]["text"] = IMG
    q["limits"].append(BREAKOUT)
    q["streams"][0]["stream"] = SCRIPT  # no longer the stream's name: its findings show their title
    next(f for f in doc["findings"] if f["kind"] == "degraded")["title"] = IMG
    q["rtt"][0]["server"] = IMG
    text = render_html_document(doc)
    p = parse(text)
    assert [a.get("type") for a, _ in p.scripts] == ["application/json", None]
    assert not [t for t, _ in p.tags if t == "img"]
    assert not [a for _, a in p.tags if any(k.startswith("on") for k in a)]
    shown = "".join(parse(section(text, "media-quality")).text)
    assert SCRIPT in shown and IMG in shown and "window.__pwned=3" in shown
    md = render_markdown_document(doc)
    prose = re.sub(r"~~~.*?~~~", "", md, flags=re.S)
    assert re.search(r"(?<!\\)[<\[]", prose) is None


def _stream(**kw) -> dict:
    s = {"flow_id": 1, "direction": "c2s", "ssrc": "0x00000001", "src": "10.0.0.1", "src_port": 5000,
         "dst": "52.112.0.1", "dst_port": 3478, "first_ns": 0, "last_ns": 0, "bitrate_series": [], "gaps": [],
         "packets": 10, "lost": 0, "expected": 10, "lost_pct": 0.0}
    return {**s, **kw}


def test_long_series_are_drawn_with_their_peaks_and_breaks():
    from meshpcap.report.quality import PLOT_POINTS, curve_path, series_points

    n = 3 * PLOT_POINTS
    loss = [0.0] * n
    loss[400] = 7.0
    loss[12:15] = [None] * 3  # one whole run of 3 bins without packets (bins 12-14: the 5th run)
    s = _stream(last_ns=(n - 1) * SEC + SEC // 2, loss_series_pct=loss)
    pts = series_points(s, "loss_series_pct")
    assert len(pts) == PLOT_POINTS and pts[400 // 3][1] == 7.0 and pts[3][1] == 0.0 and pts[4][1] is None
    assert curve_path([(1.0, 2.0), (3.0, None), (5.0, 6.0), (7.0, 8.0)]) == "M1.0,2.0 h0 M5.0,6.0 L7.0,8.0"


def test_long_streams_are_drawn_with_at_most_plot_points():
    from meshpcap.report.quality import PLOT_POINTS, bitrate_points

    n = 3 * PLOT_POINTS  # a 15-minute call in 1 s bins: runs of 3 bins averaged
    s = _stream(last_ns=(n - 1) * SEC + SEC // 2, bitrate_series=[float(i % 3) for i in range(n)])
    pts = bitrate_points(s)
    assert len(pts) == PLOT_POINTS
    assert {v for _, v in pts} == {1.0}  # mean of 0, 1, 2
    assert pts[0][0] == int(1.5 * SEC) and pts[-1][0] <= s["last_ns"]
    # a bin the targets file changed (the document does not carry it): the points still span the stream
    s = _stream(last_ns=9 * SEC, bitrate_series=[1.0] * 4)  # 4 bins over 9 s: not 1 s bins
    xs = [ns for ns, _ in bitrate_points(s)]
    assert len(xs) == 4 and 0 < xs[0] < xs[-1] <= 9 * SEC and xs == sorted(xs)
