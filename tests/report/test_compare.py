"""One capture under several profiles: read once, findings side by side, exit code of the first profile."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import meshpcap
import meshpcap.pipeline as pipeline
from meshpcap.cli import app
from meshpcap.report.compare import render_compare
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
THREE = ["multi-room", "mesh-2024-10", "teams"]


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))


def test_read_once_and_rows(monkeypatch):
    calls = []
    real = pipeline._read_flows  # what reads a capture, under read_flows and analyze's own reading
    monkeypatch.setattr(pipeline, "_read_flows", lambda *a, **k: calls.append(a) or real(*a, **k))
    c = meshpcap.analyze_profiles(SAMPLES / "relay-udp-dropped.pcapng", THREE, service_tags=TAGS)
    assert len(calls) == 1
    assert c.profiles == THREE and c.verdicts == {"multi-room": "fail", "mesh-2024-10": "fail", "teams": "fail"}
    rows = {r.title: r for r in c.rows}
    relay = rows["UDP 3478 to 52.113.144.132 got no answer (silently dropped)"]
    assert relay.cells == ("error", "error", "error") and relay.holds_under(THREE) == THREE
    # a Mesh port outside the rules: allowed under the 2024-06 rules, unexpected under the later Mesh doc (its
    # media_ports), unrelated under teams (Teams media does not use 30000-30499)
    stray = rows["unexpected UDP 30012 to 20.73.100.20"]
    assert stray.cells == (None, "error", None) and stray.holds_under(THREE) == ["mesh-2024-10"]
    groups = {r.key: r.cells for r in c.rows if r.kind == "expected"}
    assert groups["expected|mesh-30000"] == ("met", None, None)
    assert groups["expected|media-relay"] == ("met-by-fallback",) * 3
    # each report is the one analyze() gives for that profile
    alone = meshpcap.analyze(SAMPLES / "relay-udp-dropped.pcapng", profile="teams", service_tags=TAGS)
    assert [f.to_dict() for f in c.reports[2].judgement.findings] == [f.to_dict() for f in alone.judgement.findings]


def test_flow_table_input_and_auto():
    ft = meshpcap.read_flows(SAMPLES / "single-room-teams.pcap")
    c = meshpcap.analyze_profiles(ft, ["multi-room", "auto"], as_of="2026-01-05")
    assert c.profiles == ["multi-room", "teams"] and c.verdicts == {"multi-room": "fail", "teams": "pass"}
    only = [r for r in c.rows if r.kind == "missing"]
    assert [(r.title, r.holds_under(c.profiles)) for r in only] == [
        ("no traffic: a working session exchanges Mesh traffic with AzureCloud on ports 30000-30499", ["multi-room"])]
    text = render_compare(c, "table")
    assert text.splitlines()[0] == ("COMPARISON: multi-room: FAIL; teams: PASS (exit code follows multi-room, "
                                    "--fail-on missing)")
    assert "NOTE (multi-room): judged against the 2024-06-12 requirements" in text
    assert "only multi-room" in text
    doc = json.loads(render_compare(c, "json"))
    assert doc["schema"] == "meshpcap.compare/1" and [p["id"] for p in doc["profiles"]] == ["multi-room", "teams"]
    assert doc["rows"][0]["holds_under"] == ["multi-room"]
    assert "| finding | kind | multi-room | teams | holds under |" in render_compare(c, "markdown")


def test_cli_exit_code_follows_the_first_profile():
    runner = CliRunner()
    capture = str(SAMPLES / "single-room-teams.pcap")
    res = runner.invoke(app, ["analyze", capture, "--profile", "teams", "--profile", "multi-room"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("COMPARISON: teams: PASS; multi-room: FAIL")
    res = runner.invoke(app, ["analyze", capture, "-p", "multi-room", "-p", "teams"])
    assert res.exit_code == 1
    res = runner.invoke(app, ["analyze", capture, "-p", "multi-room", "-p", "teams", "--fail-on", "blocked"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["analyze", capture, "-p", "multi-room", "-p", "teams", "--format", "csv"])
    assert res.exit_code == 2 and res.stderr == ("meshpcap: --format csv: several profiles compare as table, "
                                                 "markdown or json\n")
    res = runner.invoke(app, ["analyze", capture, "-p", "multi-room", "-p", "nope"])
    assert res.exit_code == 2 and res.stderr.startswith("meshpcap: profile 'nope': unknown profile")


def test_analyze_with_profiles():
    c = meshpcap.analyze(SAMPLES / "single-room-teams.pcap", profiles=["teams", "single-room"])
    assert c.profiles == ["teams", "single-room"] and c.verdict == "pass"
    assert repr(c).endswith("teams PASS, single-room PASS; 2 rows>")
