"""Rules tied to their source: the shipped and generated profiles against the rows Microsoft published.

The rows are read from ../shared/spec/m365-worldwide-teams-rows.md (verbatim copies of the Microsoft 365
worldwide endpoints page, Teams section per version and the Mesh-relevant Common rows of 2025043000) by
a parser written here, independent of the package's endpoints loader; the tests skip without the file.
Every domain, CIDR and port of a row must be in the rule generated for it, and nothing else.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from meshpcap.pipeline import load_rules
from meshpcap.rules.load import load_profile, profiles_dir

ROWS_MD = "m365-worldwide-teams-rows.md"
VERSIONS = ("2025043000", "2025013000", "2023073100", "2022072800")
TEAMS_COMMON = {56, 59, 184}  # the Common rows the teams profile declares (sign-in, *.cloud.microsoft)


def _ports(cell: str) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for proto, ports in re.findall(r"\*\*(TCP|UDP):\*\*\s*([\d,\s]+)", cell):
        out[proto.lower()] = {int(p) for p in ports.replace(" ", "").split(",") if p}
    return out


def parse_rows(text: str) -> dict[str, dict[str, dict[int, dict]]]:
    """{version: {"Skype"|"Common"|"SharePoint": {id: row}}} from the Markdown tables."""
    out: dict[str, dict[str, dict[int, dict]]] = {}
    version = area = None
    for line in text.splitlines():
        m = re.match(r"## v(\d{10})", line)
        if m:
            version, area = m.group(1), "Skype"
            out[version] = {}
            continue
        if line.startswith("### "):
            area = "Skype" if "Teams" in line else "SharePoint" if "SharePoint" in line else "Common"
            continue
        m = re.match(r"(\d+) \| ([^|]+) \| (Yes|No) \| (.*) \| ([^|]*)$", line)
        if not (m and version):
            continue
        urls: list[str] = []
        ips: list[str] = []
        for group in re.findall(r"`([^`]*)`", m.group(4)):
            for item in (x.strip() for x in group.split(",")):
                try:
                    ipaddress.ip_network(item)
                    ips.append(item)
                except ValueError:
                    urls.append(item)
        out[version].setdefault(area, {})[int(m.group(1))] = {
            "urls": set(urls), "ips": {ipaddress.ip_network(i) for i in ips}, "ports": _ports(m.group(5)),
            "required": "Required" in m.group(2), "category": m.group(2).split("<BR>")[0],
        }
    return out


@pytest.fixture(scope="module")
def rows(request):
    from tests.rules.conftest import SPEC

    path = SPEC / ROWS_MD
    if not path.is_file():
        pytest.skip(f"shared data {ROWS_MD} not available")
    return parse_rows(path.read_text(encoding="utf-8"))


def _endpoint_rules(profile) -> dict[int, object]:
    return {r.endpoint_set: r for r in profile.rules if r.endpoint_set is not None}


def _assert_rules_are_rows(profile, expected_rows: dict[int, dict], version: str):
    got = _endpoint_rules(profile)
    assert sorted(got) == sorted(expected_rows), (profile.id, version)  # nothing more, nothing less
    for set_id, row in expected_rows.items():
        r = got[set_id]
        assert r.id == f"M365-{set_id}"
        assert set(r.domains) == row["urls"], (profile.id, version, set_id)
        assert set(r.cidrs) == row["ips"], (profile.id, version, set_id)
        ports = {t: {p for lo, hi in ps.ranges for p in range(lo, hi + 1)} for t, ps in r.port_map}
        assert ports == row["ports"], (profile.id, version, set_id)
        assert r.requirement == ("required" if row["required"] else "optional")
        assert r.source == f"Microsoft 365 URLs and IP address ranges, endpoint set {set_id}, version {version}"


def test_the_rows_parse(rows):
    assert set(rows) == set(VERSIONS)
    assert sorted(rows["2025043000"]["Skype"]) == [11, 12, 16, 17, 18, 19, 27, 127, 180]
    assert sorted(rows["2025043000"]["Common"]) == [46, 47, 50, 56, 59, 69, 71, 78, 147, 184]
    assert rows["2025043000"]["Skype"][12]["ports"] == {"tcp": {80, 443}, "udp": {443}}
    assert sorted(rows["2022072800"]["Skype"]) == [11, 12, 13, 15, 16, 17, 18, 19, 22, 26, 27, 127]


def test_shipped_endpoints_file_is_the_rows(rows):
    """rules/endpoints/m365-worldwide-2025043000.json holds exactly the Teams and Common rows of the page."""
    doc = json.loads((profiles_dir() / "endpoints" / "m365-worldwide-2025043000.json").read_text())
    want = {**{(i, "Skype"): r for i, r in rows["2025043000"]["Skype"].items()},
            **{(i, "Common"): r for i, r in rows["2025043000"]["Common"].items()}}
    assert sorted((d["id"], d["serviceArea"]) for d in doc) == sorted(want)
    for d in doc:
        row = want[(d["id"], d["serviceArea"])]
        assert set(d.get("urls", [])) == row["urls"]
        assert {ipaddress.ip_network(i) for i in d.get("ips", [])} == row["ips"]
        ports = {t: {int(p) for p in d[f"{t}Ports"].split(",")} for t in ("tcp", "udp") if d.get(f"{t}Ports")}
        assert ports == row["ports"] and d["required"] == row["required"] and d["category"] == row["category"]


def test_shipped_profiles_are_the_rows(rows):
    v = "2025043000"
    teams, common = rows[v]["Skype"], rows[v]["Common"]
    _assert_rules_are_rows(load_profile("single-room"), teams, v)
    _assert_rules_are_rows(load_profile("teams"), {**teams, **{i: common[i] for i in TEAMS_COMMON}}, v)
    _assert_rules_are_rows(load_profile("mesh-2024-10"), {**teams, **common}, v)


@pytest.mark.parametrize("version", VERSIONS)
def test_profiles_generated_from_each_version(rows, spec_file, version, tmp_path, monkeypatch):
    """The teams and single-room profiles built from the derived endpoints file of each version."""
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path))
    path = spec_file(f"m365-endpoints-worldwide.docs-{version}.json")
    present = rows[version].get("Common", {})
    teams = load_rules("teams", m365_endpoints=path)
    _assert_rules_are_rows(teams, {**rows[version]["Skype"], **{i: present[i] for i in TEAMS_COMMON if i in present}}, version)
    _assert_rules_are_rows(load_rules("single-room", m365_endpoints=path), rows[version]["Skype"], version)
    assert f"version {version}" in teams.title
