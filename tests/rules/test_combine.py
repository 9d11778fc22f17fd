"""How endpoint files combine with a profile, as its [profile.endpoints] table says (issue 11 item 5)."""

from __future__ import annotations

import json
from datetime import date

import pytest

from meshpcap.errors import RuleError
from meshpcap.pipeline import load_rules
from meshpcap.rules.load import load_profile, parse_profile_data, profiles_dir

ROWS_2022 = [  # the shape of version 2022072800's Teams rows (two of them, trimmed)
    {"id": 11, "serviceArea": "Skype", "serviceAreaDisplayName": "Skype for Business Online and Microsoft Teams",
     "ips": ["13.107.64.0/18", "52.112.0.0/14", "52.120.0.0/14", "2603:1063::/38"], "udpPorts": "3478,3479,3480,3481",
     "expressRoute": True, "category": "Optimize", "required": True},
    {"id": 12, "serviceArea": "Skype", "serviceAreaDisplayName": "Skype for Business Online and Microsoft Teams",
     "urls": ["*.lync.com", "*.teams.microsoft.com", "teams.microsoft.com"], "ips": ["52.112.0.0/14"],
     "tcpPorts": "80,443", "expressRoute": True, "category": "Allow", "required": True},
    {"id": 13, "serviceArea": "Skype", "urls": ["*.broadcast.skype.com"], "tcpPorts": "443", "category": "Allow",
     "required": True},
]


@pytest.fixture
def file_2022(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "endpoints-2022072800.json"
    path.write_text(json.dumps(ROWS_2022))
    return path


def test_multi_room_adds_the_teams_rows(file_2022):
    p = load_rules("multi-room", m365_endpoints=file_2022)  # was: "expected 'media-relay': id: duplicate id"
    assert [r.id for r in p.rules][-3:] == ["M365-11", "M365-12", "M365-13"]
    assert [r.id for r in p.rules][:11] == [r.id for r in load_profile("multi-room").rules]
    assert p.group("media-relay").rules == ("MR-A4", "M365-11") and p.group("media-relay").fallback == ("MR-A5",)
    assert p.rule("M365-12").expected is None and p.rule("M365-11").event == "MR"
    assert p.source.endswith("plus Microsoft 365 endpoints version 2022072800 (endpoints-2022072800.json)")
    assert (p.endpoints_version, p.date) == ("2022072800", date(2024, 6, 12))


def test_mesh_2024_10_replaces_its_m365_rows(file_2022):
    shipped = load_profile("mesh-2024-10")
    assert {"M365-11", "M365-184", "M365-56"} <= {r.id for r in shipped.rules}
    p = load_rules("mesh-2024-10", m365_endpoints=file_2022)  # was: "rule 'M365-11': id: duplicate id"
    assert [r.id for r in p.rules] == ["X-3", "X-3b", "X-4a", "X-4b", "X-4c", "M365-11", "M365-12", "M365-13"]
    assert p.rule("M365-11").cidrs[0].compressed == "13.107.64.0/18"
    assert p.group("media-relay").rules == ("X-4a", "M365-11")
    assert p.group("media-relay").fallback == ("M365-12", "X-4b")
    assert "version 2022072800" in p.title and "2025043000" not in p.title + p.source
    assert p.date == date(2024, 10, 28)  # the doc's date, not the rows'


def test_single_room_title_follows_the_file(file_2022):
    p = load_rules("single-room", m365_endpoints=file_2022)
    assert p.title == "Single-room Mesh-app event (Microsoft Teams endpoints, M365 version 2022072800)"
    assert "2025043000" not in p.title + p.source and p.date == date(2022, 7, 28)
    assert [r.id for r in p.rules] == ["M365-11", "M365-12", "M365-13"]
    assert p.rule("M365-12").ports_for("udp") is None  # no UDP 443 in 2022
    assert p.group("media-relay").fallback == ("M365-12",)


def test_a_file_without_set_11_drops_the_group_it_fed(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "endpoints-2022072800.json"
    path.write_text(json.dumps(ROWS_2022[1:]))
    p = load_rules("single-room", m365_endpoints=path)
    assert [g.id for g in p.expected] == ["teams-service", "media-relay"]  # media-relay met by its fallback alone
    assert p.group("media-relay").rules == ()
    path.write_text(json.dumps(ROWS_2022[2:]))
    assert [g.id for g in load_rules("single-room", m365_endpoints=path).expected] == []


def test_user_profile_without_a_declaration_adds(tmp_path, file_2022):
    doc = {"profile": {"id": "mine", "source": "s"},
           "rule": [{"id": "r", "source": "s", "domains": ["a.example"], "transport": "tcp", "ports": [443]}]}
    (tmp_path / "mine.toml").write_text('[profile]\nid = "mine"\nsource = "s"\n[[rule]]\nid = "r"\nsource = "s"\n'
                                        'domains = ["a.example"]\ntransport = "tcp"\nports = [443]\n')
    p = load_rules(str(tmp_path / "mine.toml"), m365_endpoints=file_2022)
    assert [r.id for r in p.rules] == ["r", "M365-11", "M365-12", "M365-13"]
    assert parse_profile_data(doc, "F").endpoints is None
    clash = tmp_path / "clash.toml"
    clash.write_text('[profile]\nid = "c"\nsource = "s"\n[[rule]]\nid = "M365-12"\nsource = "s"\n'
                     'domains = ["a.example"]\ntransport = "tcp"\nports = [443]\n')
    with pytest.raises(RuleError) as exc:
        load_rules(str(clash), m365_endpoints=file_2022)
    assert str(exc.value) == f"{file_2022}: rule 'M365-12': id: duplicate id (already in profile 'c')"


@pytest.mark.parametrize("table, message", [
    ({"combine": "merge"}, "F: profile: endpoints: combine: 'merge' is not one of replace, add"),
    ({"combine": "add", "ids": ["56"]}, "F: profile: endpoints: ids: must be a list of endpoint-set ids (integers)"),
    ({"combine": "add", "expected": {"x": "g"}}, "F: profile: endpoints: expected: 'x' = 'g': give endpoint-set id = \"group id\""),
    ({"combine": "add", "file": "nope-2025043000.json"}, "F: profile: endpoints: file: 'nope-2025043000.json': no such endpoints file"),
    ({"combine": "add", "colour": 1}, "F: profile: endpoints: colour: unknown key (expected one of: combine, service_areas, "
     "ids, expected, event, file, use_cache)"),
])
def test_endpoints_table_validation(table, message):
    doc = {"profile": {"id": "p", "source": "s", "endpoints": table},
           "rule": [{"id": "r", "source": "s", "domains": ["a.example"], "transport": "tcp", "ports": [443]}]}
    with pytest.raises(RuleError) as exc:
        parse_profile_data(doc, "F")
    assert str(exc.value) == message


def test_shared_2022_file_with_every_shipped_profile(spec_file, monkeypatch, tmp_path):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path))
    path = spec_file("m365-endpoints-worldwide.docs-2022072800.json")
    for pid in ("multi-room", "mesh-2024-10", "single-room", "teams"):
        p = load_rules(pid, m365_endpoints=path)
        assert p.endpoints_version == "2022072800" and "M365-26" in {r.id for r in p.rules}, pid
        assert "2025043000" not in p.title + p.source, pid


def _profile_with_file(tmp_path, extra=""):
    (tmp_path / "rows-2025043000.json").write_bytes((profiles_dir() / "endpoints" / "m365-worldwide-2025043000.json")
                                                    .read_bytes())
    path = tmp_path / "p.toml"
    path.write_text('[profile]\nid = "p"\nsource = "s"\n[profile.endpoints]\ncombine = "replace"\n'
                    'file = "rows-2025043000.json"\n' + extra)
    return path


def test_profile_file_generation_errors(tmp_path):
    p = load_profile(_profile_with_file(tmp_path))
    assert p.endpoints_version == "2025043000" and len(p.rules) == 9 and p.date == date(2025, 4, 30)
    path = _profile_with_file(tmp_path, 'expected = { "11" = "nope" }\n')
    with pytest.raises(RuleError) as exc:
        load_profile(path)
    assert str(exc.value) == f"{path}: profile: endpoints: expected: 'nope' is not a defined [[expected]] group"
    path = _profile_with_file(tmp_path, '[[rule]]\nid = "M365-17"\nsource = "s"\ndomains = ["aka.ms"]\n'
                                        'transport = "tcp"\nports = [443]\n')
    with pytest.raises(RuleError) as exc:
        load_profile(path)
    assert str(exc.value) == f"{path}: rule 'M365-17': id: duplicate id (also generated from rows-2025043000.json)"
