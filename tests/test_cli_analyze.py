"""`meshpcap analyze`, `profiles` and `tags`: exit codes, one-line errors, formats, add-on rules, tags update."""

from __future__ import annotations

import json
from pathlib import Path
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from meshpcap.cli import app
from tests.conftest import SAMPLES, SHARED_SPEC

TAGS = str(SAMPLES / "ServiceTags_Public_SAMPLE.json")
runner = CliRunner()


def sample(name: str) -> str:
    p = SAMPLES / name
    if not p.is_file():
        pytest.skip(f"samples/{name} is missing")
    return str(p)


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    """Never pick up a snapshot cached on this machine."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(cache))
    return cache


def run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.stdout + res.stderr
    return res


def analyze(name, *args):
    return run("analyze", sample(name), "--service-tags", TAGS, *args)


def one_line_error(res, *parts):
    assert res.exit_code == 2, (res.exit_code, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("meshpcap: "), res.stderr
    for p in parts:
        assert p in lines[0], (p, lines[0])
    assert res.stdout == ""
    return lines[0]


# -- exit codes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args, code", [
    ("healthy-multi-room.pcapng", [], 0),
    ("relay-udp-dropped.pcapng", [], 1),
    ("relay-udp-dropped.pcapng", ["--fail-on", "never"], 0),
    ("relay-udp-dropped.pcapng", ["--fail-on", "blocked"], 1),
    ("quic-and-ipv6.pcapng", [], 0),  # unexpected only
    ("quic-and-ipv6.pcapng", ["--fail-on", "unexpected"], 1),
    ("single-room-teams.pcap", [], 1),  # multi-room: mesh-30000 missing
    ("single-room-teams.pcap", ["--fail-on", "blocked"], 0),
    ("single-room-teams.pcap", ["--profile", "single-room"], 0),
    ("mid-session.pcapng", [], 0),
])
def test_exit_codes(name, args, code):
    res = analyze(name, *args)
    assert res.exit_code == code, res.stdout + res.stderr
    assert res.stdout.startswith("FAIL" if code else "PASS")


def test_bad_capture(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture\n")
    one_line_error(run("analyze", bad, "--service-tags", TAGS), str(bad), "not a pcap or pcapng capture")
    one_line_error(run("analyze", tmp_path / "nope.pcap", "--service-tags", TAGS), "nope.pcap", "no such file")


def test_bad_rule_file_names_file_rule_and_field(tmp_path):
    rules = tmp_path / "org.toml"
    rules.write_text('[[rule]]\nid = "ORG-1"\ndescription = "x"\ndomains = ["*.contoso.com"]\ntransport = "udp"\n'
                     'ports = ["3478-3481x"]\nrequirement = "required"\nevent = "MR"\nsource = "our policy"\n')
    line = one_line_error(analyze("healthy-multi-room.pcapng", "--rules", rules), str(rules), "ORG-1", "ports")
    assert "3478-3481x" in line


def test_rule_file_not_toml(tmp_path):
    rules = tmp_path / "org.toml"
    rules.write_text("x = [\n")
    one_line_error(analyze("healthy-multi-room.pcapng", "--rules", rules), str(rules), "not valid TOML")


def test_good_rule_file_adds_its_rules(tmp_path):
    rules = tmp_path / "org.toml"
    rules.write_text('[[rule]]\nid = "ORG-1"\ndescription = "our TURN"\ndomains = ["turn.contoso.com"]\n'
                     'transport = "udp"\nports = ["3478"]\nrequirement = "optional"\nevent = "MR"\n'
                     'source = "our policy"\n')
    res = analyze("healthy-multi-room.pcapng", "--rules", rules, "--format", "json")
    assert res.exit_code == 0
    assert {"rule": "ORG-1", "status": "not seen"}.items() <= next(
        c for c in json.loads(res.stdout)["checklist"] if c["rule"] == "ORG-1").items()


def test_unknown_profile():
    one_line_error(analyze("healthy-multi-room.pcapng", "--profile", "nope"), "nope", "multi-room", "single-room")


def test_missing_service_tags_file(tmp_path):
    missing = tmp_path / "ServiceTags_Public_20990101.json"
    one_line_error(run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", missing), str(missing))


def test_bad_webslate_url():
    one_line_error(analyze("healthy-multi-room.pcapng", "--webslate", "http://contoso.example/x"), "--webslate")


def test_bad_fail_on_is_a_usage_error():
    res = analyze("healthy-multi-room.pcapng", "--fail-on", "sometimes")
    assert res.exit_code == 2


def test_unwritable_output(tmp_path):
    one_line_error(analyze("healthy-multi-room.pcapng", "-o", tmp_path / "no" / "such" / "dir.txt"), "cannot write")


# -- formats and options ----------------------------------------------------------------------------

def test_markdown():
    res = analyze("reject-rst.pcapng", "--format", "markdown")
    assert res.exit_code == 1
    assert res.stdout.startswith("# meshpcap: FAIL: 2 blocked")
    assert "## Findings" in res.stdout and "## Requirements" in res.stdout
    assert "| blocked | MR-D6 |" in res.stdout


def test_output_file(tmp_path):
    out = tmp_path / "report.json"
    res = analyze("tls-refused.pcapng", "--format", "json", "-o", out)
    assert res.exit_code == 1 and res.stdout == ""
    d = json.loads(out.read_text())
    assert d["schema"] == "meshpcap.report/2" and d["verdict"] == "fail"
    assert [f["blocked_by"] for f in d["findings"]] == ["tls-alert"]


def test_show_unrelated():
    hidden = analyze("healthy-multi-room.pcapng").stdout
    shown = analyze("healthy-multi-room.pcapng", "--show-unrelated").stdout
    assert "unrelated not shown: --show-unrelated" in hidden
    flows_hidden = hidden.split("\nFLOWS", 1)[1]
    flows_shown = shown.split("\nFLOWS", 1)[1]
    assert " unrelated" not in flows_hidden.split("\n", 1)[1]
    assert flows_shown.count(" unrelated") == 6
    csv_hidden = analyze("healthy-multi-room.pcapng", "--format", "csv").stdout
    csv_shown = analyze("healthy-multi-room.pcapng", "--format", "csv", "--show-unrelated").stdout
    assert len(csv_shown.splitlines()) == len(csv_hidden.splitlines()) + 6


def test_no_snapshot_says_membership_not_verified():
    res = run("analyze", sample("healthy-multi-room.pcapng"), "--format", "json")
    d = json.loads(res.stdout)
    assert d["service_tags"] is None
    assert d["warnings"][0].startswith("AzureCloud membership not verified")
    port_only = [f for f in d["flows"] if f["matched_by"] == "port"]
    assert port_only and all("AzureCloud membership not verified" in f["detail"] for f in port_only)
    table = run("analyze", sample("healthy-multi-room.pcapng")).stdout
    assert "service tags: none (AzureCloud membership not verified)" in table


def test_webslate_and_cloud_scripting_rules_in_checklist():
    res = analyze("healthy-multi-room.pcapng", "--webslate", "https://contoso.sharepoint.com/x",
                  "--cloud-scripting", "myapp", "--format", "json")
    assert res.exit_code == 0
    checklist = {c["rule"]: c for c in json.loads(res.stdout)["checklist"]}
    assert checklist["WS-1"]["destination"] == "contoso.sharepoint.com"
    assert checklist["CS-1"]["destination"] == "myapp.azurewebsites.net"
    assert checklist["WS-1"]["status"] == checklist["CS-1"]["status"] == "not seen"
    table = analyze("healthy-multi-room.pcapng", "--webslate", "https://contoso.sharepoint.com/x",
                    "--cloud-scripting", "myapp").stdout
    req = table.split("REQUIREMENTS", 1)[1].split("\nFLOWS", 1)[0]
    assert "WS-1" in req and "contoso.sharepoint.com" in req and "CS-1" in req and "myapp.azurewebsites.net" in req


def test_m365_endpoints():
    endpoints = SHARED_SPEC / "m365-endpoints-worldwide.docs-2025043000.json"
    if not endpoints.is_file():
        pytest.skip("../shared/spec/m365-endpoints-worldwide.docs-2025043000.json is not present")
    res = analyze("single-room-teams.pcap", "--profile", "single-room", "--m365-endpoints", endpoints,
                  "--format", "json")
    assert res.exit_code == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["verdict"] == "pass"
    assert (d["profile"]["id"], d["profile"]["date"]) == ("single-room", "2025-04-30")
    assert "2025043000" in d["profile"]["source"]
    rules = {f["sni"]: f["rule"] for f in d["flows"] if f["sni"]}
    assert rules["teams.microsoft.com"] == "M365-12" and rules["aka.ms"] == "M365-17"


# -- profiles and tags --------------------------------------------------------------------------------

def test_profiles():
    res = run("profiles")
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    for pid, date in (("multi-room", "2024-06-12"), ("mesh-2024-10", "2024-10-28"), ("single-room", "2025-04-30")):
        assert any(line.split()[:1] == [pid] and date in line for line in lines), (pid, res.stdout)
    assert "multi-room (default)" in res.stdout
    d = json.loads(run("profiles", "--format", "json").stdout)
    assert {p["id"]: p["date"] for p in d} == {"multi-room": "2024-06-12", "mesh-2024-10": "2024-10-28",
                                               "single-room": "2025-04-30", "teams": "2025-04-30"}


def test_tags_which():
    res = run("tags", "which", "52.113.144.132", "2603:1026:2405::1a", "198.51.100.77", "--service-tags", TAGS)
    assert res.exit_code == 0
    assert res.stdout == ("52.113.144.132: AzureCloud, AzureCloud.westeurope\n"
                          "2603:1026:2405::1a: AzureCloud, AzureCloud.westeurope\n"
                          "198.51.100.77: (no tag)\n")


def test_tags_which_errors():
    one_line_error(run("tags", "which", "52.113.144.300", "--service-tags", TAGS), "52.113.144.300")
    one_line_error(run("tags", "which", "52.113.144.132"), "no service-tag snapshot")


@pytest.fixture
def tags_server():
    """A download page linking a small ServiceTags_Public_20251028.json, on 127.0.0.1 (ephemeral port)."""
    body = (SAMPLES / "ServiceTags_Public_SAMPLE.json").read_bytes()
    routes: dict[str, bytes] = {"/download/ServiceTags_Public_20251028.json": body}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server API
            data = routes.get(self.path)
            self.send_response(200 if data is not None else 404)
            data = data if data is not None else b"not found"
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    routes["/details"] = (f'<html><a href="{base}/download/ServiceTags_Public_20251028.json">download</a>'
                          "</html>").encode()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_tags_update_then_analyze_uses_the_cache(tags_server, empty_cache):
    res = run("tags", "update", "--url", f"{tags_server}/details", "--timeout", "5")
    assert res.exit_code == 0, res.stderr
    cached = empty_cache / "ServiceTags_Public_20251028.json"
    assert res.stdout == f"{cached}: date 2025-10-28, changeNumber 375\n"
    assert cached.read_bytes() == (SAMPLES / "ServiceTags_Public_SAMPLE.json").read_bytes()

    res = run("analyze", sample("healthy-multi-room.pcapng"), "--format", "json")
    assert res.exit_code == 0
    d = json.loads(res.stdout)
    assert d["service_tags"]["file"] == str(cached)
    assert (d["service_tags"]["change_number"], d["service_tags"]["date"]) == (375, "2025-10-28")
    assert d["verdict"] == "pass" and d["findings"] == []
    assert not any("not verified" in w for w in d["warnings"])

    res = run("tags", "which", "20.73.100.20")  # the cached snapshot is the default here too
    assert res.stdout == "20.73.100.20: AzureCloud, AzureCloud.westeurope\n"


def test_tags_update_failure_is_one_line(tags_server):
    one_line_error(run("tags", "update", "--url", f"{tags_server}/nothing-here", "--timeout", "5"), "404")


# -- issue 8 section 4: field input -------------------------------------------------------------------

_ORG_RULES = ('[[rule]]\nid = "ORG-1"\ndescription = "our TURN"\ndomains = ["turn.contoso.com"]\n'
              'transport = "udp"\nports = ["3478"]\nrequirement = "optional"\nevent = "MR"\nsource = "our policy \u00e9"\n')


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le-bom", "utf-16-be-bom"])
def test_rule_file_saved_by_notepad_is_read(tmp_path, encoding):
    rules = tmp_path / "org.toml"
    if encoding.endswith("-bom"):
        codec = encoding[:-4]
        bom = "\ufeff".encode(codec)
        rules.write_bytes(bom + _ORG_RULES.replace("\n", "\r\n").encode(codec))
    else:
        rules.write_bytes(_ORG_RULES.encode(encoding))
    res = analyze("healthy-multi-room.pcapng", "--rules", rules, "--format", "json")
    assert res.exit_code == 0, res.stderr
    org = next(c for c in json.loads(res.stdout)["checklist"] if c["rule"] == "ORG-1")
    assert org["source"] == "our policy \u00e9"


def test_rule_file_in_another_encoding_is_one_line(tmp_path):
    rules = tmp_path / "org.toml"
    rules.write_bytes(_ORG_RULES.encode("latin-1"))
    one_line_error(analyze("healthy-multi-room.pcapng", "--rules", rules), str(rules), "not UTF-8 text",
                   "save it as UTF-8")


def test_output_never_overwrites_the_capture(tmp_path):
    cap = tmp_path / "session.pcapng"
    cap.write_bytes((SAMPLES / "tls-refused.pcapng").read_bytes())
    before = cap.read_bytes()
    for args in (["-o", cap], ["-o", tmp_path / "." / "session.pcapng", "--format", "json"]):
        one_line_error(run("analyze", cap, "--service-tags", TAGS, *args), "is the capture being read")
    link = tmp_path / "link.pcapng"
    link.symlink_to(cap)
    one_line_error(run("analyze", cap, "--service-tags", TAGS, "-o", link, "-f", "json"), "is the capture being read")
    one_line_error(run("flows", cap, "-o", cap), "is the capture being read")
    assert cap.read_bytes() == before


@pytest.mark.parametrize("ext, check", [
    ("json", lambda t: json.loads(t)["schema"] == "meshpcap.report/2"),
    ("csv", lambda t: t.startswith("id,transport,")),
    ("md", lambda t: t.startswith("# meshpcap: FAIL")),
    ("txt", lambda t: t.startswith("FAIL: ")),
])
def test_output_format_from_the_extension(tmp_path, ext, check):
    out = tmp_path / f"report.{ext.upper() if ext == 'json' else ext}"
    res = analyze("tls-refused.pcapng", "-o", out)
    assert res.exit_code == 1 and res.stdout == ""
    assert check(out.read_text())
    # --format wins over the extension
    assert analyze("tls-refused.pcapng", "-o", out, "--format", "table").exit_code == 1
    assert out.read_text().startswith("FAIL: ")


def test_output_extension_unknown_says_why(tmp_path):
    one_line_error(analyze("tls-refused.pcapng", "-o", tmp_path / "report.xyz"), "report.xyz",
                   "cannot tell the format from the extension '.xyz'", "--format")
    assert not (tmp_path / "report.xyz").exists()


def test_profiles_csv_and_unknown_format():
    res = run("profiles", "--format", "csv")
    assert res.exit_code == 0
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["id"]: (r["date"], r["default"]) for r in rows} == {
        "multi-room": ("2024-06-12", "true"), "mesh-2024-10": ("2024-10-28", "false"),
        "single-room": ("2025-04-30", "false"), "teams": ("2025-04-30", "false")}
    bad = run("profiles", "--format", "xml")
    assert bad.exit_code == 2 and bad.stdout == "" and "xml" in bad.stderr


# -- the service-tag snapshot's date, even renamed, and its distance from the capture ---------------------

def test_renamed_snapshot_is_dated_from_its_content(tmp_path):
    # the quick-start sample used to print "date None"
    renamed = tmp_path / "tags.json"
    renamed.write_bytes(Path(TAGS).read_bytes())
    res = run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", renamed, "--format", "json")
    st = json.loads(res.stdout)["service_tags"]
    assert (st["date"], st["date_from"], st["change_number"], st["cloud"]) == ("2025-10-28", "changeNumber", 375,
                                                                               "Public")
    table = run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", renamed).stdout
    assert f"service tags: {renamed} (Public cloud, changeNumber 375, date 2025-10-28 from its changeNumber)" in table


def test_unknown_snapshot_date_is_said(tmp_path):
    doc = json.loads(Path(TAGS).read_text())
    doc["changeNumber"] = 9999
    p = tmp_path / "tags.json"
    p.write_text(json.dumps(doc))
    res = run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", p)
    assert "date unknown: not in the file name, and the changeNumber is not a known snapshot" in res.stdout
    assert json.loads(run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", p, "-f", "json")
                      .stdout)["service_tags"]["date"] is None


def test_snapshot_far_from_the_capture_warns(tmp_path):
    # the samples were captured on 2024-06-20; the sample snapshot is of 2025-10-28
    res = analyze("healthy-multi-room.pcapng")
    assert ("! the service-tag snapshot is dated 2025-10-28, 495 days after the capture (2024-06-20)"
            in res.stdout)
    near = tmp_path / "ServiceTags_Public_20240617.json"
    near.write_bytes(Path(TAGS).read_bytes())
    res = run("analyze", sample("healthy-multi-room.pcapng"), "--service-tags", near, "-f", "json")
    st = json.loads(res.stdout)["service_tags"]
    assert (st["date"], st["date_from"], st["warning"]) == ("2024-06-17", "file name", None)
