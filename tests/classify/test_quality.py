"""Media quality judged against Microsoft's targets: the targets file (shipped values, validation with
errors naming file, target and field), `degraded` findings that name the stream, the window and the
value against the target with its source, `--fail-on degraded`, and the report's sections."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import meshpcap
from meshpcap.classify.quality import load_targets
from meshpcap.cli import app
from meshpcap.errors import RuleError
from meshpcap.capture import open_capture
from tests.builders import write_pcap
from tests.conftest import SAMPLES
from tests.media_builders import Call, eth_udp

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
HEALTHY = SAMPLES / "healthy-multi-room.pcapng"
RELAY = ("52.113.144.132", 3478)  # the healthy sample's relay (AzureCloud in the sample tags)
runner = CliRunner()


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))


def test_shipped_targets_are_microsofts():
    t = load_targets()
    got = {x.metric: (x.op, x.limit, x.window_ms, x.judged) for x in t.targets}
    assert got == {"latency_one_way_ms": ("<", 50, None, False), "rtt_ms": ("<", 100, None, True),
                   "burst_loss_pct": ("<", 10, 200, True), "loss_pct": ("<", 1, 15000, True),
                   "jitter_ms": ("<", 30, 15000, True), "reorder_pct": ("<", 0.05, None, True)}
    assert "prepare-network" in t.url and t.date == "2024-06-25" and t.severity == "warning"
    assert (t.options.loss_window_ms, t.options.burst_window_ms) == (15000, 200)


GOOD = (SAMPLES.parent / "rules" / "quality" / "teams-client-edge.toml").read_text()


@pytest.mark.parametrize("edit, parts", [
    (lambda s: s.replace('op = "<"\nlimit = 10\n', 'op = "!="\nlimit = 10\n'), ["burst-loss", "op", "'!='"]),
    (lambda s: s.replace('metric = "jitter_ms"', 'metric = "jiter_ms"'), ["jitter", "metric", "jiter_ms"]),
    (lambda s: s.replace("limit = 0.05", "limit = -1"), ["reordering", "limit"]),
    (lambda s: s.replace("[source]", "[sauce]"), ["[source]"]),
    (lambda s: s.replace('severity = "warning"', 'severity = "loud"'), ["findings.severity", "loud"]),
    (lambda s: s.replace("gap_ms = 500", "gap_ms = 0"), ["streams.gap_ms"]),
    (lambda s: s.replace("judged = false", "judged = 3"), ["latency-one-way", "judged"]),
    (lambda s: s + "\n[[target]\n", ["not valid TOML"]),
])
def test_bad_targets_file(tmp_path, edit, parts):
    p = tmp_path / "q.toml"
    p.write_text(edit(GOOD))
    with pytest.raises(RuleError) as exc:
        load_targets(p)
    for part in [str(p)] + parts:
        assert part in str(exc.value)


def healthy_plus(tmp_path: Path, call: Call | None) -> Path:
    """The healthy sample's packets, and a call from a second client port to its relay (``call`` from the
    client, a clean stream back)."""
    pkts = []
    with open_capture(HEALTHY) as cap:
        for b in cap.batches():
            for i in range(len(b)):
                o, c = int(b.offset[i]), int(b.caplen[i])
                pkts.append((int(b.ts_ns[i]), bytes(b.data[o:o + c])))
    if call is not None:
        call.start_ns = pkts[0][0] + 100_000_000
        for at, _i, seq, ts in call.packets():
            pkts.append((at, eth_udp("10.20.0.15", 59400, *RELAY, call.payload(seq, ts))))
        back = Call(ssrc=0x5555, count=call.count, start_ns=call.start_ns + 7_000_000)
        for at, _i, seq, ts in back.packets():
            pkts.append((at, eth_udp(*RELAY, "10.20.0.15", 59400, back.payload(seq, ts))))
    pkts.sort(key=lambda p: p[0])
    return write_pcap(tmp_path / "call.pcap", pkts)


def bad_call() -> Call:
    # 200 packets (4 s); 6 lost in a row in the first second, one pair swapped
    return Call(count=200, lost=set(range(20, 26)), swapped={120})


def test_degraded_findings_name_stream_window_value_and_source(tmp_path):
    r = meshpcap.analyze(healthy_plus(tmp_path, bad_call()), service_tags=TAGS)
    deg = r.findings[r.findings.kind == "degraded"]
    assert sorted(deg.rule) == ["quality:burst-loss", "quality:packet-loss", "quality:reordering"]
    assert set(deg.severity) == {"warning"}
    assert r.verdict == "pass"  # warnings: only --fail-on degraded gates on them
    by = dict(zip(deg.rule, deg.to_dict("records")))
    loss = by["quality:packet-loss"]
    assert f"{100 * 6 / 200:.3g}%" in loss["title"] and "SSRC 0x11223344" in loss["title"] and "< 1%" in loss["title"]
    assert "Packet loss < 1% during any 15 s interval" in loss["detail"]
    assert "prepare-network" in loss["source"] and "2024-06-25" in loss["source"]
    burst = by["quality:burst-loss"]
    assert "60%" in burst["title"]  # 6 of the 10 packets of a 200 ms window
    assert "0.2 s window from" in burst["detail"]
    assert by["quality:reordering"]["title"].startswith(f"packet reordering {100 * 1 / 194:.3g}%")
    text = r.to_json()  # the streams written one at a time, orjson where it gives json.dumps' bytes
    assert text == json.dumps(r.to_dict(), indent=2) + "\n"
    doc = json.loads(text)
    assert doc["quality"]["verdict"] == "not met"
    assert doc["quality"]["degraded"] == list(deg.id)
    assert any("SRTCP" in x for x in doc["quality"]["limits"])
    assert len(doc["streams"]) == len(r.streams) >= 2  # the sample's own relay stream too
    s = r.streams[r.streams.src_port == 59400].iloc[0]
    assert (s.packets, s.expected, s.lost, s.reordered) == (194, 200, 6, 1)


def test_clean_call_meets_the_targets(tmp_path):
    r = meshpcap.analyze(healthy_plus(tmp_path, Call(count=200)), service_tags=TAGS, fail_on="degraded")
    assert not (r.findings.kind == "degraded").any()
    assert r.verdict == "pass"
    q = json.loads(r.to_json())["quality"]
    assert q["verdict"] == "met"
    relay = [x for x in q["rtt"] if x["server"] == RELAY[0]]  # the sample's STUN transactions with the relay
    assert relay and relay[0]["judged"] and relay[0]["ok"]


def test_no_quality_leaves_the_document_as_it_was(tmp_path):
    r = meshpcap.analyze(HEALTHY, service_tags=TAGS, quality=False)
    doc = json.loads(r.to_json())
    assert "quality" not in doc and "streams" not in doc
    assert list(r.streams.columns) and r.streams.empty


def test_cli_fail_on_degraded_and_streams_csv(tmp_path):
    p = healthy_plus(tmp_path, bad_call())
    base = ["analyze", str(p), "--service-tags", str(TAGS)]
    assert runner.invoke(app, base).exit_code == 0
    out = tmp_path / "streams.csv"
    res = runner.invoke(app, base + ["--fail-on", "degraded", "--streams-csv", str(out)])
    assert res.exit_code == 1, res.stdout
    assert "MEDIA QUALITY: not met" in res.stdout
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    mine = [x for x in rows if x["src_port"] == "59400"]
    assert len(mine) == 1 and mine[0]["lost"] == "6" and mine[0]["ssrc"] == "0x11223344"
    assert runner.invoke(app, base + ["--fail-on", "degraded", "--no-quality"]).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text("[source]\n")
    res = runner.invoke(app, base + ["--quality-targets", str(bad)])
    assert res.exit_code == 2 and str(bad) in res.stderr and "Traceback" not in res.stderr


def test_scope_from_the_verdict_at_each_flows_place_or_from_all(tmp_path):
    # judge_quality reads flow i's verdict at place i - 1 (record order) and, where a verdict is elsewhere (a
    # judgement put together by hand), from every verdict: the same scopes and findings either way
    from dataclasses import replace

    from meshpcap.classify.quality import judge_quality

    r = meshpcap.analyze(healthy_plus(tmp_path, bad_call()), service_tags=TAGS)
    j, q = r.judgement, r.quality
    a = judge_quality(q.media, j, q.targets)
    b = judge_quality(q.media, replace(j, flows=j.flows[::-1]), q.targets)
    assert a.results == b.results == q.results and a.rtt == b.rtt and a.findings == b.findings
    assert {x["scope"] for x in a.results} == {"microsoft-edge"}
    c = judge_quality(q.media, replace(j, flows=[replace(v, rule=None) for v in j.flows][::-1]), q.targets)
    assert {x["scope"] for x in c.results} == {"other"}
