"""meshpcap.analyze_many and `meshpcap batch`: one table per kind over many captures, hostile files
recorded as errors, captures found by their bytes, cached results, exit codes."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct

import pandas as pd
import pytest
import zstandard
from typer.testing import CliRunner

import meshpcap
from meshpcap import schema
from meshpcap.batch import FINDINGS_TABLE, FLOWS_TABLE, analyze_many, find_captures, looks_like_capture
from meshpcap.cli import app
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
FEW = ["reject-icmp.pcapng", "healthy-multi-room.pcapng", "single-room-teams.pcap", "quic-and-ipv6.pcapng"]


def _dtypes_match(df, table):
    assert list(df.columns) == [c.name for c in table]
    want = schema.dtypes(table)
    assert {c: df[c].dtype for c in df.columns} == want


@pytest.fixture(scope="module")
def few(tmp_path_factory):
    d = tmp_path_factory.mktemp("caps")
    for name in FEW:
        shutil.copy(SAMPLES / name, d / name)
    return d


@pytest.fixture(scope="module")
def few_batch(few):
    return analyze_many([few], service_tags=TAGS, jobs=2, progress=False)


def test_tables_agree_with_single_capture_reports(few, few_batch):
    b = few_batch
    paths = [str(few / n) for n in sorted(FEW)]
    assert b.captures["capture"].tolist() == paths
    _dtypes_match(b.captures, schema.CAPTURE_FIELDS)
    _dtypes_match(b.flows, FLOWS_TABLE)
    _dtypes_match(b.findings, FINDINGS_TABLE)
    for p in paths:
        r = meshpcap.analyze(p, service_tags=TAGS)
        row = b.captures.set_index("capture").loc[p]
        assert row.verdict == r.verdict
        assert row.flows == len(r.flows) and row.packets == r.capture["packets"]
        assert row.blocked == sum(1 for f in r.judgement.findings if f.kind == "blocked" and f.severity != "info")
        assert row.first_seen == pd.Timestamp(r.capture["first_ns"], unit="ns", tz="UTC")
        assert row.sha256 == __import__("hashlib").sha256(open(p, "rb").read()).hexdigest()
        assert row.profile == "multi-room" and row.profile_date == "2024-06-12"
        assert row.service_tags_change_number == 375
        mine = b.flows[b.flows.capture == p].drop(columns="capture").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, r.flows)
        mine = b.findings[b.findings.capture == p].drop(columns="capture").reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, r.findings)
    assert b.analysed == 4 and b.reused == 0 and b.verdict == "fail"


def test_summary_names_failing_rules_and_worst_evidence(few, few_batch):
    b = few_batch
    s = b.summary()
    assert s.verdicts == {"pass": 2, "fail": 2, "inconclusive": 0, "error": 0}
    a4 = s.rules[(s.rules.rule == "MR-A4") & (s.rules.kind == "blocked")].iloc[0]
    assert a4.captures == 1 and a4.worst_capture == str(few / "reject-icmp.pcapng")
    flows = b.flows.set_index(["capture", "id"])
    assert a4.worst_time == flows.loc[(a4.worst_capture, a4.worst_flow), "first_seen"]
    text = str(s)
    assert text.startswith("FLEET: 4 captures: 2 pass, 2 fail, 0 inconclusive, 0 error")
    assert "MR-A4 blocked: 1 capture, 1 finding; worst " in text
    json.dumps(s.to_dict())
    # only findings without a flow (nothing gives a time), and an empty batch
    only_missing = analyze_many([few / "single-room-teams.pcap"], service_tags=TAGS, progress=False).summary()
    assert only_missing.rules.kind.tolist() == ["missing"] and only_missing.rules.worst_time.isna().all()
    assert str(only_missing.rules.worst_time.dtype) == "datetime64[ns, UTC]"
    assert "FLEET: 1 capture: 0 pass, 1 fail" in str(only_missing)
    empty = analyze_many([], service_tags=TAGS, progress=False)
    assert len(empty.captures) == 0 and empty.verdict == "inconclusive" and len(empty.summary().rules) == 0


def test_hostile_files_become_error_rows_and_the_batch_goes_on(tmp_path):
    from tests.batch.hooks import hostile_audit

    for name, data in (("crash.bin", b"CRASH..."), ("hang.bin", b"HANG...."), ("eat.bin", b"EATMEM..")):
        (tmp_path / name).write_bytes(data)
    (tmp_path / "text.txt").write_text("not a capture\n")
    shutil.copy(SAMPLES / "reject-icmp.pcapng", tmp_path / "ok.pcapng")
    files = [tmp_path / n for n in ("crash.bin", "eat.bin", "text.txt", "ok.pcapng")]
    b = analyze_many(files, service_tags=TAGS, jobs=2, progress=False, memory_limit=256 << 20, audit=hostile_audit)
    rows = b.captures.set_index("capture")
    err = {os.path.basename(p): e for p, e in rows.error.items()}
    assert rows.verdict.tolist() == ["error"] * 3 + ["fail"]
    assert err["crash.bin"] == "the audit crashed (SIGSEGV)"
    assert err["eat.bin"].startswith("ran out of memory (limit 256 MiB")
    assert "not a pcap or pcapng capture" in err["text.txt"]
    assert pd.isna(err["ok.pcapng"])
    assert rows.sha256.notna().all() and rows.loc[str(tmp_path / "crash.bin"), "file_size"] == 8
    assert len(b.flows) == len(meshpcap.analyze(tmp_path / "ok.pcapng", service_tags=TAGS).flows)
    # a hang is stopped at the timeout (alone here: on a loaded machine a real capture may take a while)
    b = analyze_many([tmp_path / "hang.bin"], service_tags=TAGS, jobs=1, progress=False, timeout=1.0,
                     audit=hostile_audit)
    assert b.captures.error.tolist() == ["timed out after 1 s (stopped)"]


def test_directories_are_searched_by_bytes_not_names(tmp_path):
    data = (SAMPLES / "reject-rst.pcapng").read_bytes()
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "session.dat").write_bytes(data)  # a capture under any name
    (tmp_path / "a" / "x.gz").write_bytes(gzip.compress((SAMPLES / "single-room-teams.pcap").read_bytes()))
    (tmp_path / "b.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "notes.pcap").write_text("looks like one by name only\n")
    (tmp_path / "other.gz").write_bytes(gzip.compress(b"plain text inside gzip"))
    (tmp_path / "empty.pcapng").write_bytes(b"")
    (tmp_path / "head.pcap").write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    found = [os.path.relpath(p, tmp_path) for p in find_captures([tmp_path])]
    assert found == ["a/session.dat", "a/x.gz", "b.zst", "head.pcap"]
    assert not looks_like_capture(tmp_path / "notes.pcap")
    # a file named on the command line is audited whatever it holds; globs expand; no file twice
    assert find_captures([tmp_path / "notes.pcap", str(tmp_path / "*.zst"), tmp_path / "b.zst"]) == [
        str(tmp_path / "notes.pcap"), str(tmp_path / "b.zst")]
    b = analyze_many([tmp_path], service_tags=TAGS, jobs=1, progress=False)
    assert b.captures.compression.fillna("-").tolist() == ["-", "gzip", "zstd", "-"]
    assert b.captures.verdict.tolist()[:3] == ["fail", "fail", "fail"]


def test_cache_reuses_results_until_input_or_options_change(tmp_path, monkeypatch):
    count = tmp_path / "count.txt"
    monkeypatch.setenv("MESHPCAP_TEST_COUNT", str(count))
    from tests.batch.hooks import counting_audit

    caps = tmp_path / "caps"
    caps.mkdir()
    for name in FEW[:3]:
        shutil.copy(SAMPLES / name, caps / name)
    cache = tmp_path / "cache"

    def run(**kw):
        count.write_text("")
        b = analyze_many([caps], service_tags=TAGS, jobs=1, progress=False, cache=cache, audit=counting_audit, **kw)
        return b, len(count.read_text().splitlines())

    first, n1 = run()
    assert (n1, first.analysed, first.reused) == (3, 3, 0)
    second, n2 = run()
    assert (n2, second.analysed, second.reused) == (0, 0, 3)
    assert second.captures.cached.all() and not first.captures.cached.any()
    for name in ("captures", "flows", "findings"):
        a, c = first.tables()[name], second.tables()[name]
        if name == "captures":
            a, c = a.drop(columns=["cached", "seconds"]), c.drop(columns=["cached", "seconds"])
        pd.testing.assert_frame_equal(a, c)
    shutil.copy(SAMPLES / "reject-rst.pcapng", caps / FEW[0])  # a changed input
    shutil.copy(SAMPLES / "proxy-403.pcapng", caps / "new.pcapng")  # the folder grew
    third, n3 = run()
    assert (n3, third.reused) == (2, 2)
    _, n4 = run(fail_on="never")  # an option that changes verdicts
    assert n4 == 4
    _, n5 = run(force=True)
    assert n5 == 4


def test_progress_callable_and_on_result(few):
    seen = []
    lines = []
    b = analyze_many([few], service_tags=TAGS, jobs=2, progress=lambda done, total, row: seen.append((done, total)),
                     on_result=lambda row: lines.append(row["capture"]))
    assert seen == [(i, 4) for i in range(1, 5)]
    assert sorted(lines) == sorted(b.captures.capture)


def test_cli_batch_lines_summary_exit_codes_and_outputs(few, tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    runner = CliRunner()
    res = runner.invoke(app, ["batch", str(few), "--service-tags", str(TAGS), "-j", "2", "--no-progress",
                              "-o", str(tmp_path / "audit.csv")])
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    verdict_lines = [ln for ln in lines[:4]]
    assert sorted(ln.split()[0] for ln in verdict_lines) == ["FAIL", "FAIL", "PASS", "PASS"]
    assert any(ln.startswith(f"FAIL  {few / 'reject-icmp.pcapng'}: 2 blocked") for ln in verdict_lines)
    assert "FLEET: 4 captures: 2 pass, 2 fail, 0 inconclusive, 0 error" in res.stdout
    caps = pd.read_csv(tmp_path / "audit.csv")
    assert len(caps) == 4 and list(caps.columns) == schema.names(schema.CAPTURE_FIELDS)
    assert len(pd.read_csv(tmp_path / "audit.flows.csv")) == sum(caps.flows)
    res = runner.invoke(app, ["batch", str(few / "healthy-multi-room.pcapng"), "--service-tags", str(TAGS),
                              "-o", str(tmp_path / "audit.json")])
    assert res.exit_code == 0 and "(cached)" in res.stdout
    doc = json.loads((tmp_path / "audit.json").read_text())
    assert doc["schema"] == "meshpcap.batch/1" and doc["captures"][0]["verdict"] == "pass"
    bad = tmp_path / "bad.pcap"
    bad.write_text("nope")
    res = runner.invoke(app, ["batch", str(bad), str(few / "healthy-multi-room.pcapng"), "--service-tags", str(TAGS)])
    assert res.exit_code == 2
    # one line per capture as it finishes (either may finish first), then the summary
    assert any(ln.startswith(f"ERROR {bad}: not a pcap or pcapng capture") for ln in res.stdout.splitlines()[:2])
    res = runner.invoke(app, ["batch", str(bad), str(few), "--service-tags", str(TAGS), "--no-cache"])
    assert res.exit_code == 1  # a failing capture outranks one that could not be read
    res = runner.invoke(app, ["batch", str(tmp_path / "nothing-*.pcap"), "--service-tags", str(TAGS)])
    assert res.exit_code == 2 and "no capture found" in res.stderr
    res = runner.invoke(app, ["batch", str(few), "--profile", "nope"])
    assert res.exit_code == 2 and "unknown profile" in res.stderr and "Traceback" not in res.output
    victim = tmp_path / "victim.json"
    shutil.copy(SAMPLES / "proxy-403.pcapng", victim)
    res = runner.invoke(app, ["batch", str(victim), "--service-tags", str(TAGS), "-o", str(victim)])
    assert res.exit_code == 2 and "is one of the captures audited; not overwritten" in res.stderr
    assert victim.read_bytes() == (SAMPLES / "proxy-403.pcapng").read_bytes()
    res = runner.invoke(app, ["batch", str(few), "-o", str(tmp_path / "audit.xlsx")])
    assert res.exit_code == 2 and "must end in .parquet, .csv or .json" in res.stderr


def test_progress_is_off_without_a_terminal_and_with_false(monkeypatch):
    from meshpcap.batch import _Progress

    class Tty:
        def isatty(self):
            return True

        def write(self, s):
            return len(s)

        def flush(self):
            pass

    assert _Progress(None, 3).start().kind is None  # pytest's stderr is not a terminal
    assert _Progress(False, 3).start().kind is None
    monkeypatch.setattr("sys.stderr", Tty())
    bar = _Progress(None, 3, [100, 0, 900])
    assert bar.kind is None  # nothing shown (no thread) before start()
    assert bar.start().kind == "rich"
    bar.advance({}, 2)
    task = bar.bar.tasks[0]
    assert (task.total, task.completed, task.fields["captures"]) == (1000, 900, "1/3 captures")
    bar.close()
    assert _Progress(False, 3).start().kind is None


def test_memory_exhausted_to_the_last_bytes_is_still_reported(tmp_path):
    from tests.batch.hooks import exhausting_audit

    shutil.copy(SAMPLES / "reject-icmp.pcapng", tmp_path / "a.pcapng")
    b = analyze_many([tmp_path / "a.pcapng"], service_tags=TAGS, jobs=1, progress=False, memory_limit=128 << 20,
                     audit=exhausting_audit)
    assert b.captures.error.tolist() == ["ran out of memory (limit 128 MiB beyond the worker)"]
