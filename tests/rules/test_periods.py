"""Profiles know when they were in force: dates with sources, the profile in force on a date, the notice."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

import meshpcap
from meshpcap.errors import RuleError
from meshpcap.rules.load import load_profile, parse_profile_data
from meshpcap.rules.periods import capture_date, in_force, parse_as_of, profile_notice
from tests import builders as B


def test_shipped_dates_and_sources():
    mr = load_profile("multi-room")
    assert (mr.valid_from, mr.superseded_on, mr.superseded_by) == (date(2024, 6, 12), date(2024, 7, 30), "mesh-2024-10")
    assert "@cb249088" in mr.superseded_source and "MC807460" in mr.superseded_source
    for pid in ("mesh-2024-10", "single-room"):
        p = load_profile(pid)
        assert (p.retired_on, p.retired_by) == (date(2025, 12, 1), "teams")
        assert "07ff9941" in p.retired_source and "MC1074973" in p.retired_source and "MC1111181" in p.retired_source
    teams = load_profile("teams")
    assert teams.ended_on is None and teams.endpoints_version == "2025043000"


@pytest.mark.parametrize("on, expected", [
    (date(2024, 1, 1), "multi-room"),  # before every profile: the default one (the notice says so)
    (date(2024, 7, 29), "multi-room"),
    (date(2024, 7, 30), "mesh-2024-10"),
    (date(2025, 11, 30), "mesh-2024-10"),
    (date(2025, 12, 1), "teams"),
    (date(2026, 5, 1), "teams"),
])
def test_in_force(on, expected):
    assert in_force(on).id == expected


def test_in_force_from_another_profile():
    assert in_force(date(2026, 1, 5), "single-room").id == "teams"
    assert in_force(date(2025, 1, 5), "single-room").id == "single-room"


def test_notices():
    mr = load_profile("multi-room")
    n = profile_notice(mr, date(2026, 1, 5))
    assert n.kind == "superseded" and n.in_force == "teams"
    assert n.text == ("judged against the 2024-06-12 requirements (`multi-room`), superseded on 2024-07-30 by "
                      "`mesh-2024-10`, then retired on 2025-12-01 in favour of `teams`; for this capture's date "
                      "(2026-01-05) the rules in force were `teams` (--profile teams, or --profile auto)")
    n = profile_notice(mr, date(2024, 9, 1), as_of=True)
    assert n.in_force == "mesh-2024-10" and "for the date given (2024-09-01) the rules in force were `mesh-2024-10`" in n.text
    assert profile_notice(mr, date(2024, 6, 20)) is None
    assert profile_notice(mr, None) is None
    n = profile_notice(load_profile("mesh-2024-10"), date(2025, 12, 1))
    assert n.kind == "retired" and n.text.startswith("judged against the 2024-10-28 requirements (`mesh-2024-10`), "
                                                     "retired on 2025-12-01 in favour of `teams`;")
    assert profile_notice(mr, date(2024, 3, 1)).kind == "not-yet"
    n = profile_notice(load_profile("teams"), date(2020, 4, 16))
    assert n.kind == "endpoints-newer" and "version 2025043000 (published 2025-04-30)" in n.text


def test_capture_date_and_as_of():
    ns = int(datetime(2026, 1, 15, 23, 59, tzinfo=timezone.utc).timestamp()) * 10**9
    assert capture_date(ns) == date(2026, 1, 15) and capture_date(None) is None
    assert parse_as_of("2025-12-01") == date(2025, 12, 1)
    with pytest.raises(RuleError, match="--as-of: 'yesterday' is not a date"):
        parse_as_of("yesterday")


HEAD = {"id": "p", "source": "s"}
RULE = [{"id": "r", "source": "s", "domains": ["a.example"], "transport": "tcp", "ports": [443]}]


@pytest.mark.parametrize("extra, message", [
    ({"valid_from": "2024-01-01"}, "F: profile: valid_from_source: missing (every date must cite its source; valid_from is given)"),
    ({"retired_source": "x"}, "F: profile: retired_source: given without retired_on"),
    ({"superseded_by": "teams"}, "F: profile: superseded_by: given without superseded_on"),
    ({"valid_from": "2024-01-01", "valid_from_source": "a", "retired_on": "2023-01-01", "retired_source": "b"},
     "F: profile: valid_from: superseded_on / retired_on must come after valid_from"),
    ({"retired_on": "soon", "retired_source": "b"}, "F: profile: retired_on: 'soon' is not a date (YYYY-MM-DD)"),
])
def test_period_validation(extra, message):
    with pytest.raises(RuleError) as exc:
        parse_profile_data({"profile": {**HEAD, **extra}, "rule": RULE}, "F")
    assert str(exc.value) == message


def _capture_2026(tmp_path):
    t0 = int(datetime(2026, 1, 15, 10, 0, tzinfo=timezone.utc).timestamp()) * 10**9
    c, s = "10.0.0.5", "52.113.0.9"
    pkts = [(t0, B.ether(B.tcp4(c, 50000, s, 443, "S", seq=1))),
            (t0 + 10**6, B.ether(B.tcp4(s, 443, c, 50000, "SA", seq=9, ack=2))),
            (t0 + 2 * 10**6, B.ether(B.tcp4(c, 50000, s, 443, "A", seq=2, ack=10))),
            (t0 + 3 * 10**6, B.ether(B.udp4(c, 50001, s, 3478, b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\0" * 12))),
            (t0 + 4 * 10**6, B.ether(B.udp4(s, 3478, c, 50001, b"\x01\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\0" * 12)))]
    return B.write_pcap(tmp_path / "2026.pcap", pkts)


def test_capture_dated_2026_with_default_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    path = _capture_2026(tmp_path)
    r = meshpcap.analyze(path)
    assert r.profile["id"] == "multi-room"
    (n,) = r.profile["notices"]
    assert (n["kind"], n["date"], n["in_force"]) == ("superseded", "2026-01-15", "teams")
    from meshpcap.report.analysis import render_markdown, render_table

    lines = render_table(r).splitlines()
    assert lines[1] == "NOTE: " + n["text"] and "the rules in force were `teams`" in lines[1]
    assert "> **Note:** judged against the 2024-06-12 requirements" in render_markdown(r)
    auto = meshpcap.analyze(path, profile="auto")
    assert auto.profile["id"] == "teams" and auto.profile["notices"][0]["kind"] == "auto"
    assert meshpcap.analyze(path, profile="auto", as_of="2024-08-01").profile["id"] == "mesh-2024-10"
    assert "notices" not in meshpcap.analyze(path, as_of="2024-06-20").profile


def test_cli_as_of_and_auto(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from meshpcap.cli import app

    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    path = str(_capture_2026(tmp_path))
    runner = CliRunner()
    res = runner.invoke(app, ["analyze", path, "--as-of", "2026-13-01"])
    assert res.exit_code == 2 and res.stderr == "meshpcap: --as-of: '2026-13-01' is not a date (YYYY-MM-DD)\n"
    res = runner.invoke(app, ["analyze", path, "--profile", "auto"])
    lines = res.stdout.splitlines()
    assert lines[0].endswith("under profile teams (2025-04-30)")
    assert lines[1] == "NOTE: --profile auto: `teams` is the profile in force on this capture's date (2026-01-15)"
    res = runner.invoke(app, ["analyze", path, "--as-of", "2024-07-01"])
    assert "NOTE" not in res.stdout.split("\n\n", 1)[0]
