"""`meshpcap endpoints update` / `import` and `meshpcap tags import`, against a server on 127.0.0.1."""

from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

import meshpcap
from meshpcap.cli import app
from meshpcap.pipeline import load_rules
from meshpcap.rules.m365 import cached_m365_endpoints
from meshpcap.rules.update import UpdateError, import_m365_endpoints, import_service_tags, update_m365_endpoints
from tests.conftest import SAMPLES

ROWS = [  # a later version's shape (issue 11): set 12 with UDP 443, no 18/180, a new 193
    {"id": 11, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams", "ips": ["52.112.0.0/14"],
     "udpPorts": "3478,3479,3480,3481", "expressRoute": True, "category": "Optimize", "required": True},
    {"id": 12, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams", "urls": ["teams.microsoft.com"],
     "ips": ["52.112.0.0/14"], "tcpPorts": "80,443", "udpPorts": "443", "expressRoute": True, "category": "Allow",
     "required": True},
    {"id": 193, "serviceArea": "Skype", "serviceAreaDisplayName": "Microsoft Teams",
     "urls": ["*.static.microsoft", "*.usercontent.microsoft"], "tcpPorts": "443", "udpPorts": "443",
     "expressRoute": False, "category": "Default", "required": True},
    {"id": 56, "serviceArea": "Common", "urls": ["login.microsoftonline.com"], "tcpPorts": "80,443",
     "expressRoute": True, "category": "Allow", "required": True},
]
BODY = json.dumps(ROWS).encode()
VERSION = json.dumps({"instance": "Worldwide", "latest": "2026010100"}).encode()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(folder))
    return folder


def serve(server, version=VERSION, body=BODY, status=200):
    server.routes["/version/Worldwide"] = (200, version)
    server.routes["/endpoints/worldwide"] = (status, body)


def test_update_downloads_then_only_checks(server, cache):
    serve(server)
    path, version, downloaded = update_m365_endpoints(server.base, cache=cache, timeout=5)
    assert (path, version, downloaded) == (cache / "m365-endpoints-worldwide-2026010100.json", "2026010100", True)
    assert path.read_bytes() == BODY and cached_m365_endpoints(cache) == (path, "2026010100")
    version_req, endpoints_req = server.requests
    guid = version_req.split("clientrequestid=", 1)[1]
    assert str(uuid.UUID(guid)) == guid and version_req == f"/version/Worldwide?clientrequestid={guid}"
    assert endpoints_req == f"/endpoints/worldwide?clientrequestid={guid}"
    assert (cache / "clientrequestid").read_text().strip() == guid  # one GUID per machine
    assert update_m365_endpoints(server.base, cache=cache, timeout=5) == (path, "2026010100", False)
    assert len(server.requests) == 3 and server.requests[2] == version_req  # asked the version only
    update_m365_endpoints(server.base, cache=cache, timeout=5, force=True)
    assert len(server.requests) == 5


def test_version_as_a_list_of_instances(server, cache):
    serve(server, version=json.dumps([{"instance": "USGovDoD", "latest": "2025010100"},
                                      {"instance": "Worldwide", "latest": "2026020100"}]).encode())
    assert update_m365_endpoints(server.base, cache=cache, timeout=5)[1] == "2026020100"


@pytest.mark.parametrize("version, status, body, message", [
    (b"{oops", 200, BODY, "{base}/version/Worldwide?clientrequestid={guid}: not valid JSON: "
     "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    (json.dumps({"instance": "Worldwide", "latest": "v7"}).encode(), 200, BODY,
     "{base}/version/Worldwide?clientrequestid={guid}: 'latest' is not a version (YYYYMMDDNN): 'v7'"),
    (json.dumps({"instance": "China", "latest": "2026010100"}).encode(), 200, BODY,
     "{base}/version/Worldwide?clientrequestid={guid}: no version for instance Worldwide"),
    (VERSION, 503, b"busy", "{base}/endpoints/worldwide?clientrequestid={guid}: HTTP 503 Service Unavailable"),
    (VERSION, 200, b'{"id": 11}', "{base}/endpoints/worldwide?clientrequestid={guid}: not an endpoints file "
     "(top level is not an array of endpoint sets)"),
    (VERSION, 200, json.dumps([{"id": 11, "serviceArea": "Skype", "ips": ["52.112.0.1/14"]}]).encode(),
     "{base}/endpoints/worldwide?clientrequestid={guid}: endpoint set 11: ips: '52.112.0.1/14' has host bits set"),
    (VERSION, 200, json.dumps([{"id": 11, "serviceArea": "Skype", "required": "yes"}]).encode(),
     "{base}/endpoints/worldwide?clientrequestid={guid}: endpoint set 11: required: not true or false"),
    (VERSION, 200, json.dumps([ROWS[3]]).encode(),
     "{base}/endpoints/worldwide?clientrequestid={guid}: no Microsoft Teams (serviceArea Skype) endpoint sets in it"),
    (VERSION, 200, json.dumps([ROWS[0], ROWS[0]]).encode(),
     "{base}/endpoints/worldwide?clientrequestid={guid}: endpoint set 11: duplicate id"),
])
def test_update_failure_keeps_the_old_copy(server, cache, version, status, body, message):
    serve(server, version, body, status)
    cache.mkdir()
    old = cache / "m365-endpoints-worldwide-2025043000.json"
    old.write_bytes(b"old copy")
    (cache / "clientrequestid").write_text("0f0e0d0c-0b0a-4908-8706-050403020100\n")
    with pytest.raises(UpdateError) as exc:
        update_m365_endpoints(server.base, cache=cache, timeout=5)
    guid = "0f0e0d0c-0b0a-4908-8706-050403020100"
    assert str(exc.value) == "endpoints update failed: " + message.format(base=server.base, guid=guid)
    assert old.read_bytes() == b"old copy"
    assert sorted(p.name for p in cache.iterdir()) == ["clientrequestid", old.name]  # no temporary file left


def test_update_unreachable(cache):
    with pytest.raises(UpdateError, match=r"^endpoints update failed: http://127\.0\.0\.1:9/version/Worldwide"):
        update_m365_endpoints("http://127.0.0.1:9", cache=cache, timeout=2)
    with pytest.raises(UpdateError, match="^endpoints update failed: ftp://x: not an http"):
        update_m365_endpoints("ftp://x", cache=cache)


def test_newer_cached_copy_judges_teams_and_single_room(server, cache):
    assert load_rules("teams").endpoints_version == "2025043000"
    serve(server)
    update_m365_endpoints(server.base, cache=cache, timeout=5)
    teams = load_rules("teams")
    assert teams.endpoints_version == "2026010100" and "M365 version 2026010100" in teams.title
    assert [r.id for r in teams.rules] == ["M365-11", "M365-12", "M365-193", "M365-56"]
    assert teams.rule("M365-193").ports_text() == "TCP 443; UDP 443"
    assert [r.id for r in load_rules("single-room").rules] == ["M365-11", "M365-12", "M365-193"]
    assert load_rules("teams", use_cache=False).endpoints_version == "2025043000"
    assert load_rules("multi-room").endpoints_version is None  # multi-room takes endpoint rows only when asked
    r = meshpcap.analyze(SAMPLES / "single-room-teams.pcap", profile="single-room")
    assert r.profile["endpoints"] == {"version": "2026010100", "file": "m365-endpoints-worldwide-2026010100.json"}
    assert "version 2026010100" in r.profile["title"]


def test_older_cached_copy_is_not_used(cache):
    cache.mkdir()
    (cache / "m365-endpoints-worldwide-2024010100.json").write_bytes(BODY)
    assert load_rules("teams").endpoints_version == "2025043000"


def test_import_endpoints(tmp_path, cache):
    src = tmp_path / "worldwide.json"
    src.write_bytes(BODY)
    with pytest.raises(UpdateError) as exc:
        import_m365_endpoints(src, cache=cache)
    assert str(exc.value) == f"endpoints import failed: {src}: no endpoints version (YYYYMMDDNN) in the name: give --version"
    assert import_m365_endpoints(src, version="2026010100", cache=cache) == (
        cache / "m365-endpoints-worldwide-2026010100.json", "2026010100")
    bad = tmp_path / "endpoints-2026020100.json"
    bad.write_text("[1]")
    with pytest.raises(UpdateError, match=r"^endpoints import failed: .*endpoints-2026020100\.json: \[0\]: not an object$"):
        import_m365_endpoints(bad, cache=cache)
    assert cached_m365_endpoints(cache)[1] == "2026010100"


def test_import_service_tags(tmp_path, cache):
    sample = SAMPLES / "ServiceTags_Public_SAMPLE.json"
    path, when, change = import_service_tags(sample, cache=cache, snapshot=__import__("datetime").date(2025, 11, 3))
    assert path == cache / "ServiceTags_Public_20251103.json" and path.read_bytes() == sample.read_bytes()
    bad = tmp_path / "ServiceTags_Public_20251110.json"
    bad.write_text('{"values": []}')
    with pytest.raises(UpdateError) as exc:
        import_service_tags(bad, cache=cache)
    assert str(exc.value) == (f"service-tag import failed: {bad}: not a service-tag file (changeNumber missing or "
                              "not an integer)")
    assert sorted(p.name for p in cache.iterdir()) == ["ServiceTags_Public_20251103.json", "tag-index"]


def test_cli(server, cache, tmp_path):
    runner = CliRunner()
    serve(server)
    res = runner.invoke(app, ["endpoints", "update", "--url", server.base, "--timeout", "5"])
    assert res.exit_code == 0 and res.stdout == f"{cache / 'm365-endpoints-worldwide-2026010100.json'}: version 2026010100\n"
    res = runner.invoke(app, ["endpoints", "update", "--url", server.base, "--timeout", "5"])
    assert res.stdout.endswith("version 2026010100 (already the latest; nothing downloaded)\n")
    serve(server, version=json.dumps({"instance": "Worldwide", "latest": "2026020100"}).encode(), body=b"[")
    res = runner.invoke(app, ["endpoints", "update", "--url", server.base, "--timeout", "5"])
    assert res.exit_code == 2 and res.stdout == "" and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("meshpcap: endpoints update failed: ") and "not valid JSON" in res.stderr
    assert cached_m365_endpoints(cache)[1] == "2026010100"
    src = tmp_path / "copied-2026030100.json"
    src.write_bytes(BODY)
    res = runner.invoke(app, ["endpoints", "import", str(src)])
    assert res.exit_code == 0 and res.stdout.endswith("m365-endpoints-worldwide-2026030100.json: version 2026030100\n")
    res = runner.invoke(app, ["tags", "import", str(SAMPLES / "ServiceTags_Public_SAMPLE.json"), "--date", "2025-11-03"])
    assert res.exit_code == 0 and res.stdout.endswith("ServiceTags_Public_20251103.json: date 2025-11-03, changeNumber 375\n")
    res = runner.invoke(app, ["tags", "import", str(SAMPLES / "ServiceTags_Public_SAMPLE.json"), "--date", "soon"])
    assert res.exit_code == 2 and res.stderr == "meshpcap: --date: 'soon' is not a date (YYYY-MM-DD)\n"
