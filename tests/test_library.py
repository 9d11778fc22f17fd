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
from tests.conftest import SAMPLES

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
    assert list(r.findings.kind) == ["missing"] * 3  # nothing of a working session is in it
    assert len(r.checklist) == 11 and list(r.checklist.columns) == CHECKLIST_COLUMNS
    d = json.loads(r.to_json())
    assert d["schema"] == "meshpcap.report/1" and d["flows"] == [] and d["capture"]["packets"] == 0


def test_repr_is_readable():
    r = meshpcap.analyze(SAMPLES / "azure-30000-dropped.pcapng", service_tags=TAGS)
    text = repr(r)
    assert text.startswith("<meshpcap Report ") and text.endswith(">") and "\n" not in text
    assert "FAIL under multi-room" in text and "findings: 3 blocked, 0 missing, 0 unexpected" in text
    assert r._repr_markdown_().startswith("# meshpcap: FAIL")


def test_to_json_schema():
    r = meshpcap.analyze(SAMPLES / "proxy-403.pcapng", service_tags=TAGS)
    d = json.loads(r.to_json())
    assert d["schema"] == "meshpcap.report/1"
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
