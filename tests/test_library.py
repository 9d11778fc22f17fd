"""meshpcap.analyze() as a notebook uses it: a Report with DataFrames (columns even when empty), verdict, JSON."""

from __future__ import annotations

import json
import struct

import pandas as pd
import pytest

import meshpcap
from meshpcap.errors import CaptureError, MeshpcapError, RuleError
from meshpcap import schema
from meshpcap.report.analysis import Report
from tests.conftest import SAMPLES, fork_pids, reaped

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
CHECKLIST_COLUMNS = ["rule", "description", "destination", "ports", "requirement", "status", "flows", "source"]


@pytest.fixture
def empty_capture(tmp_path):
    """A classic pcap with its file header only (Ethernet, microseconds)."""
    path = tmp_path / "empty.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    return path


def test_analyze_returns_a_report():
    r = meshpcap.analyze(SAMPLES / "relay-udp-dropped.pcapng", service_tags=TAGS)
    assert isinstance(r, Report)
    assert r.verdict == "fail"
    assert isinstance(r.flows, pd.DataFrame) and list(r.flows.columns) == schema.names("report_flows")
    assert isinstance(r.findings, pd.DataFrame) and list(r.findings.columns) == schema.names("findings")
    assert list(r.checklist.columns) == CHECKLIST_COLUMNS
    blocked = r.flows[r.flows.verdict == "blocked"]
    assert list(blocked.rule) == ["MR-A4"] and list(blocked.blocked_by) == ["no-answer"]
    assert r.findings.iloc[0]["rule"] == "MR-A4"
    assert r.profile["id"] == "multi-room"
    assert r.service_tags["file"] == str(TAGS)


def test_default_profile_and_string_path():
    r = meshpcap.analyze(str(SAMPLES / "healthy-multi-room.pcapng"), service_tags=str(TAGS))
    assert (r.profile["id"], r.verdict) == ("multi-room", "pass")
    assert len(r.findings) == 0 and list(r.findings.columns) == schema.names("findings")


def test_other_profile_and_fail_on():
    r = meshpcap.analyze(SAMPLES / "single-room-teams.pcap", profile="single-room", service_tags=TAGS)
    assert r.verdict == "pass"
    assert meshpcap.analyze(SAMPLES / "single-room-teams.pcap", service_tags=TAGS).verdict == "fail"
    assert meshpcap.analyze(SAMPLES / "single-room-teams.pcap", service_tags=TAGS, fail_on="never").verdict == "pass"


def test_empty_capture_has_columns(empty_capture):
    r = meshpcap.analyze(empty_capture, service_tags=TAGS)
    assert r.flows.empty and list(r.flows.columns) == schema.names("report_flows")
    assert list(r.findings.columns) == schema.names("findings")
    # nothing of a session is in it: inconclusive, with no firewall advice (it used to be three "missing" errors)
    assert r.verdict == "inconclusive" and r.exit_code == 3 and r.reason == "the capture holds no packets"
    assert "INCONCLUSIVE (the capture holds no packets) under multi-room" in repr(r)
    assert list(r.findings.kind) == []
    assert len(r.checklist) == 11 and list(r.checklist.columns) == CHECKLIST_COLUMNS
    d = json.loads(r.to_json())
    assert d["schema"] == "meshpcap.report/2" and d["flows"] == [] and d["capture"]["packets"] == 0


def test_repr_is_readable():
    r = meshpcap.analyze(SAMPLES / "azure-30000-dropped.pcapng", service_tags=TAGS)
    text = repr(r)
    assert text.startswith("<meshpcap Report ") and text.endswith(">") and "\n" not in text
    assert "FAIL under multi-room" in text and "findings: 3 blocked, 0 missing, 0 unexpected" in text
    assert r._repr_markdown_().startswith("# meshpcap: FAIL")


def test_to_json_schema():
    r = meshpcap.analyze(SAMPLES / "proxy-403.pcapng", service_tags=TAGS)
    d = json.loads(r.to_json())
    assert d["schema"] == "meshpcap.report/2"
    assert d["profile"]["id"] == "multi-room" and d["profile"]["date"] == "2024-06-12"
    assert d["service_tags"]["change_number"] == 375
    assert d["verdict"] == "fail"
    assert [f["blocked_by"] for f in d["findings"]] == ["proxy-denied"]
    assert len(d["flows"]) == len(r.flows)  # the JSON keeps every flow, unrelated ones too


def test_without_snapshot_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path))
    r = meshpcap.analyze(SAMPLES / "healthy-multi-room.pcapng")
    assert r.service_tags is None
    assert r.judgement.warnings[0].startswith("AzureCloud membership not verified")
    assert set(r.flows[r.flows.matched_by == "port"].tag_verified) == {False}


def test_errors_are_library_exceptions(tmp_path):
    with pytest.raises(CaptureError):
        meshpcap.analyze(tmp_path / "missing.pcap", service_tags=TAGS)
    with pytest.raises(MeshpcapError, match="unknown profile"):
        meshpcap.analyze(SAMPLES / "healthy-multi-room.pcapng", profile="nope", service_tags=TAGS)
    with pytest.raises(MeshpcapError, match="fail-on"):
        meshpcap.analyze(SAMPLES / "healthy-multi-room.pcapng", service_tags=TAGS, fail_on="sometimes")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "X-1"\ndescription = "x"\ndomains = ["a..b"]\ntransport = "tcp"\nports = [443]\n'
                   'requirement = "required"\nevent = "MR"\nsource = "s"\n')
    with pytest.raises(RuleError, match="X-1"):
        meshpcap.analyze(SAMPLES / "healthy-multi-room.pcapng", service_tags=TAGS, rules=bad)


def test_options_are_checked_before_the_capture_errs(tmp_path):
    """The read is begun before the options are checked (pipeline.begin_read), but a capture that cannot be
    read still reports after a refused option, as when the options came first."""
    with pytest.raises(MeshpcapError, match="fail-on") as got:
        meshpcap.analyze(tmp_path / "missing.pcap", service_tags=TAGS, fail_on="sometimes")
    assert not isinstance(got.value, CaptureError)
    with pytest.raises(MeshpcapError, match="unknown profile"):
        meshpcap.analyze(tmp_path / "missing.pcap", profile="nope", service_tags=TAGS)
    with pytest.raises(CaptureError, match="no such file"):
        meshpcap.analyze(tmp_path / "missing.pcap", service_tags=TAGS)


def _two_processes(monkeypatch) -> None:
    """Read even a small capture in two processes, in batches of 64 kB, with the media statistics' spare child."""
    from functools import partial

    import meshpcap.capture.parallel as parallel_mod
    import meshpcap.pipeline as pipeline
    from meshpcap.capture import open_capture

    monkeypatch.setattr(pipeline, "open_capture", partial(open_capture, batch_bytes=64 << 10))
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "SPARE_MIN_BYTES", 0)


@pytest.fixture(scope="module")
def two_process_capture(tmp_path_factory):
    from tests.conftest import generated_capture

    return generated_capture(tmp_path_factory, "begun", 3000, 3)


def test_the_read_begins_before_the_rules_load(two_process_capture, monkeypatch):
    """analyze starts the capture's reading process before it loads the rules, service tags and quality
    targets (their loading overlaps the walk), and the report is the one of a read begun after them."""
    import os

    import meshpcap.pipeline as pipeline
    from meshpcap import _child, settings

    if not hasattr(os, "fork") or _child.cpus() < 2 or settings.get().no_fork:
        pytest.skip("needs fork and two CPUs")
    with settings.override(no_fork=True):
        serial = meshpcap.analyze(two_process_capture, service_tags=TAGS).to_dict()
    _two_processes(monkeypatch)
    forks = fork_pids(monkeypatch)
    at_load = []
    real_load = pipeline.load_rules
    monkeypatch.setattr(pipeline, "load_rules", lambda *a, **k: (at_load.append(len(forks)), real_load(*a, **k))[1])
    report = meshpcap.analyze(two_process_capture, service_tags=TAGS)
    assert at_load == [2]  # the reader, and the media statistics' spare child, were forked already
    assert report.to_dict() == serial
    assert all(reaped(pid) for pid in forks)


def test_a_refused_option_ends_the_begun_read(two_process_capture, tmp_path, monkeypatch):
    import os

    from meshpcap import _child, settings

    if not hasattr(os, "fork") or _child.cpus() < 2 or settings.get().no_fork:
        pytest.skip("needs fork and two CPUs")
    _two_processes(monkeypatch)
    forks = fork_pids(monkeypatch)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nid = "X-1"\n')
    with pytest.raises(RuleError, match="X-1"):
        meshpcap.analyze(two_process_capture, service_tags=TAGS, rules=bad)
    with pytest.raises(MeshpcapError, match="fail-on"):
        meshpcap.analyze(two_process_capture, service_tags=TAGS, fail_on="sometimes")
    # each read begun: its reader and the media statistics' spare child, both ended and reaped
    assert len(forks) == 4 and all(reaped(pid) for pid in forks)


def test_retain_until_exit_keeps_the_reading_state(monkeypatch):
    """The CLI's one-shot mode keeps what reading built (it ends with os._exit); the library default frees it."""
    import meshpcap.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_retained", None)
    first = pipeline.read_flows(SAMPLES / "reject-rst.pcapng")
    assert pipeline._retained is None
    pipeline.retain_until_exit()
    second = pipeline.read_flows(SAMPLES / "reject-rst.pcapng")
    assert len(pipeline._retained) == 1
    assert first.to_dict() == second.to_dict()
    report = meshpcap.analyze(SAMPLES / "reject-rst.pcapng", service_tags=TAGS)
    assert pipeline._retained[-1] is report and len(pipeline._retained) == 3  # the reading's state, the report


# -- issue 8 section 5: a FlowTable already read, explicit keywords, one string is one item ----------------

def test_analyze_a_flow_table_against_several_profiles_without_reading_again(monkeypatch):
    import meshpcap.pipeline as pipeline

    ft = meshpcap.read_flows(SAMPLES / "single-room-teams.pcap")

    def no_reading(*a, **k):
        raise AssertionError("the capture was read again")

    monkeypatch.setattr(pipeline, "_read_flows", no_reading)  # what every reading of a capture goes through
    single = meshpcap.analyze(ft, "single-room", service_tags=TAGS, use_cache=False)
    multi = meshpcap.analyze(ft, "multi-room", service_tags=TAGS, use_cache=False)
    assert (single.verdict, multi.verdict) == ("pass", "fail")
    assert single.flow_table is ft and multi.capture["path"].endswith("single-room-teams.pcap")


def test_analyze_options_are_explicit_keywords():
    import inspect

    for fn in (meshpcap.analyze, __import__("meshpcap.pipeline", fromlist=["analyze"]).analyze):
        params = inspect.signature(fn).parameters
        for name in ("service_tags", "m365_endpoints", "webslates", "webslate_allow", "cloud_scripting", "rules",
                     "fail_on", "use_cache"):
            assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, (fn, name)
        assert "kwargs" not in params
    assert "FlowTable" in meshpcap.analyze.__doc__


def test_a_single_string_is_one_item():
    ft = meshpcap.read_flows(SAMPLES / "healthy-multi-room.pcapng")
    one = meshpcap.analyze(ft, service_tags=TAGS, use_cache=False, webslates="https://slate.contoso.com/board",
                           webslate_allow="cdn.contoso.com")
    listed = meshpcap.analyze(ft, service_tags=TAGS, use_cache=False, webslates=["https://slate.contoso.com/board"],
                              webslate_allow=["cdn.contoso.com"])
    assert one.profile["rules"] == listed.profile["rules"]
    assert one.checklist.rule.tolist() == listed.checklist.rule.tolist()


def test_findings_dataframe_has_clients_and_times():
    r = meshpcap.analyze(SAMPLES / "azure-30000-dropped.pcapng", service_tags=TAGS, use_cache=False)
    f = r.findings
    assert {"clients", "first_ns", "last_ns"} <= set(f.columns)
    blocked = r.judgement.findings[0]
    flows = [v.flow for v in r.judgement.flows if v.flow.id in blocked.flow_ids]
    assert list(blocked.clients) == sorted({x.client for x in flows})
    assert (blocked.first_ns, blocked.last_ns) == (min(x.first_ns for x in flows), max(x.last_ns for x in flows))


def test_read_flows_media_false_is_no_media_pass():
    """media=False reads as media=None does (no media pass); media=True measures the streams."""
    path = SAMPLES / "single-room-teams.pcap"
    off = meshpcap.read_flows(path, media=False)
    assert off.media is None
    assert off.to_dataframe().equals(meshpcap.read_flows(path).to_dataframe())
    on = meshpcap.read_flows(path, media=True)
    assert on.media is not None and meshpcap.analyze(on).quality is not None
    assert meshpcap.analyze(off).quality is None  # nothing measured: nothing to judge
