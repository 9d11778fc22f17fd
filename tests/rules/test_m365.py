"""M365 endpoints files: records, validation, profile_from_m365 vs rules/single-room.toml."""

from __future__ import annotations

import json

import pytest

from meshpcap.errors import RuleError
from meshpcap.rules.load import load_profile
from meshpcap.rules.m365 import load_m365_endpoints, load_m365_profile, profile_from_m365, version_from_name
from meshpcap.rules.model import PortSet

RECORDS = [
    {"id": 11, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams",
     "ips": ["52.112.0.0/14", "2603:1063::/38"], "udpPorts": "3478,3479,3480,3481", "expressRoute": True,
     "category": "Optimize", "required": True},
    {"id": 12, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams",
     "urls": ["*.lync.com", "teams.microsoft.com"], "ips": ["52.112.0.0/14"], "tcpPorts": "80,443", "udpPorts": "443",
     "expressRoute": True, "category": "Allow", "required": True},
    {"id": 18, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams", "urls": ["*.users.storage.live.com"],
     "tcpPorts": "443", "expressRoute": False, "category": "Default", "required": False, "notes": "Contact pictures"},
    {"id": 31, "serviceArea": "SharePoint", "urls": ["<tenant>.sharepoint.com", "*.sharepoint.com"], "tcpPorts": "80,443",
     "category": "Optimize", "required": True},
]


def write(tmp_path, doc, name="endpoints-2025043000.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_records_and_profile(tmp_path):
    path = write(tmp_path, RECORDS)
    records = load_m365_endpoints(path)
    assert [r.id for r in records] == [11, 12, 18, 31]
    assert records[1].tcp_ports == PortSet.parse([80, 443]) and records[0].tcp_ports is None
    assert records[2].notes == "Contact pictures" and not records[2].required
    profile = load_m365_profile(path)
    assert profile.id == "single-room"
    assert [r.id for r in profile.rules] == ["M365-11", "M365-12", "M365-18"]
    m12 = profile.rule("M365-12")
    assert m12.ports_text() == "TCP 80, 443; UDP 443"
    assert m12.source == "Microsoft 365 URLs and IP address ranges, endpoint set 12, version 2025043000"
    assert profile.rule("M365-18").requirement == "optional"
    assert profile.group("media-relay").satisfied_by("M365-12", "tcp", 443) == "fallback"
    assert profile.group("teams-service").satisfied_by("M365-12", "udp", 443) is None


def test_other_service_areas_and_placeholders(tmp_path):
    records = load_m365_endpoints(write(tmp_path, RECORDS))
    profile = profile_from_m365(records, None, service_areas=("SharePoint",))
    assert [r.id for r in profile.rules] == ["M365-31"]
    assert profile.rule("M365-31").domains == ("*.sharepoint.com",)  # <tenant> placeholder left out
    assert profile.rule("M365-31").source.endswith("version unknown")
    assert profile.expected == ()


def test_version_from_name():
    assert version_from_name("m365-endpoints-worldwide.docs-2025043000.json") == "2025043000"
    assert version_from_name("endpoints.json") is None


@pytest.mark.parametrize(
    "doc, message",
    [
        ("{}", "not an endpoints file (top level is not an array of endpoint sets)"),
        ("[1", "not valid JSON: Expecting ',' delimiter: line 1 column 3 (char 2)"),
        ([{"serviceArea": "Skype"}], "[0]: id missing or not an integer"),
        ([3], "[0]: not an object"),
        ([{"id": 5, "urls": "a.com"}], "endpoint set 5: urls: not a list of strings"),
        ([{"id": 5, "ips": ["10.0.0.1/8"]}], "endpoint set 5: ips: '10.0.0.1/8' has host bits set"),
        ([{"id": 5, "tcpPorts": "80,44x3"}], "endpoint set 5: tcpPorts: '44x3' is not a port or range"),
        ([{"id": 5, "udpPorts": 443}], "endpoint set 5: udpPorts: not a string"),
        ([{"id": 5, "category": 1}], "endpoint set 5: category: not a string"),
        ([{"id": 5}, {"id": 5}], "endpoint set 5: duplicate id"),
    ],
)
def test_errors(tmp_path, doc, message):
    path = write(tmp_path, doc)
    with pytest.raises(RuleError) as exc:
        load_m365_endpoints(path)
    assert str(exc.value) == f"{path}: {message}"


def _key(rule):
    return (rule.id, rule.domains, rule.cidrs, dict(rule.port_map), rule.requirement, rule.expected, rule.source)


def test_single_room_agrees_with_endpoints_file(spec_file):
    path = spec_file("m365-endpoints-worldwide.docs-2025043000.json")
    built = load_m365_profile(path)
    shipped = load_profile("single-room")
    assert [_key(r) for r in built.rules] == [_key(r) for r in shipped.rules]
    assert built.expected == shipped.expected


@pytest.mark.parametrize("version", ["2022072800", "2023073100", "2025013000"])
def test_older_versions_load(spec_file, version):
    profile = load_m365_profile(spec_file(f"m365-endpoints-worldwide.docs-{version}.json"))
    assert profile.rule("M365-11").ports_for("udp") == PortSet.parse("3478-3481")
    assert profile.rule("M365-11").source.endswith(f"version {version}")
    assert {g.id for g in profile.expected} == {"teams-service", "media-relay"}
