"""``meshpcap explain`` / ``meshpcap.explain()``: one flow, everything known about it."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from typer.testing import CliRunner

import meshpcap
from meshpcap.cli import app
from meshpcap.report import explain as ex
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
HAVE_TSHARK = shutil.which("tshark") is not None
runner = CliRunner()


def explain(name: str, flow_id: int, **kw):
    return meshpcap.explain(SAMPLES / name, flow_id, service_tags=TAGS, use_cache=False, **kw)


def test_blocked_relay_flow_packets_stun_reasoning():
    doc = explain("relay-udp-dropped.pcapng", 7, wireshark=False)
    assert doc["schema"] == "meshpcap.explain/1"
    assert doc["flow"]["server"] == "52.113.144.132" and doc["verdict"]["verdict"] == "blocked"
    # the five retransmissions (RFC 8489 6.2.1: 500 ms RTO doubling), all client to server, one transaction
    assert [p["t"] for p in doc["packets"]] == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert {p["dir"] for p in doc["packets"]} == {"c2s"} and doc["packets_total"] == 5
    assert all(p["ttl"] == 128 and p["flags"] is None for p in doc["packets"])
    stun = doc["handshake"]["stun"]
    assert [m["type"] for m in stun] == ["Allocate request"] * 5 and len({m["transaction"] for m in stun}) == 1
    why = "\n".join(doc["reasoning"])
    assert "rule MR-A4 covers it, matched by service-tag" in why and "blocked by no-answer" in why
    assert "finding F1" in why
    assert doc["display_filter"] == ("ip.addr==10.20.0.15 && ip.addr==52.113.144.132 && udp.port==58333 && "
                                     "udp.port==3478")
    assert [f["id"] for f in doc["findings"]] == ["F1", "F2"]


def test_tls_flow_packets_handshake_and_dns():
    doc = explain("relay-udp-dropped.pcapng", 2, wireshark=False)
    pk = doc["packets"]
    assert [p["flags"] for p in pk[:3]] == ["SYN", "SYN,ACK", "ACK"]
    assert [p["dir"] for p in pk[:3]] == ["c2s", "s2c", "c2s"]
    assert len(pk) == doc["flow"]["packets_c2s"] + doc["flow"]["packets_s2c"]
    assert pk[0]["record"] < pk[-1]["record"] and pk[-1]["t"] == pytest.approx(0.92331)
    ch = doc["handshake"]["client_hello"]
    assert ch["sni"] == "mesh.office.com" and ch["alpn"] == ["h2", "http/1.1"] and ch["ech"] is True
    assert ch["versions"][0] == "TLS 1.3"
    sf = doc["handshake"]["server_flight"]
    assert sf["server_hello"] and sf["version"] == "TLS 1.3" and sf["alpn"] == "h2"
    assert [(e["qname"], e["relation"]) for e in doc["dns"]] == [("mesh.office.com", "named this flow")]
    assert doc["dns"][0]["answers"][-1] == "20.73.96.14"


def test_certificate_alert_and_connect_are_decoded_again():
    healthy = explain("healthy-multi-room.pcapng", next(
        v.flow.id for v in meshpcap.analyze(SAMPLES / "healthy-multi-room.pcapng", service_tags=TAGS,
                                            use_cache=False).judgement.flows if v.flow.cert_subject), wireshark=False)
    assert healthy["handshake"]["server_flight"]["cert_subject"] == \
        "CN=meshsvc-weu.westeurope.cloudapp.azure.com"
    r = meshpcap.analyze(SAMPLES / "tls-refused.pcapng", service_tags=TAGS, use_cache=False)
    fid = next(v.flow.id for v in r.judgement.flows if v.flow.tls_alert)
    doc = explain("tls-refused.pcapng", fid, wireshark=False)
    hs = doc["handshake"]
    assert (hs.get("server_flight") or {}).get("alert") or hs.get("client_alert")
    r = meshpcap.analyze(SAMPLES / "proxy-403.pcapng", service_tags=TAGS, use_cache=False)
    fid = next(v.flow.id for v in r.judgement.flows if v.flow.connect_status == 403)
    doc = explain("proxy-403.pcapng", fid, wireshark=False)
    assert doc["handshake"]["http_request"]["method"] == "CONNECT"
    assert doc["handshake"]["http_response"]["status"] == 403
    assert any("CONNECT" in s and "403" in s for s in doc["reasoning"])


def test_cli_text_and_json(monkeypatch):
    res = runner.invoke(app, ["explain", str(SAMPLES / "relay-udp-dropped.pcapng"), "7", "--service-tags", str(TAGS),
                              "--no-wireshark"])
    assert res.exit_code == 0, res.output
    for head in ("WHY", "PACKETS (5)", "HANDSHAKE", "DNS", "WIRESHARK", "STUN -> Allocate request"):
        assert head in res.stdout
    res = runner.invoke(app, ["explain", str(SAMPLES / "relay-udp-dropped.pcapng"), "7", "--service-tags", str(TAGS),
                              "--no-wireshark", "--format", "json"])
    assert json.loads(res.stdout)["verdict"]["blocked_by"] == "no-answer"


def test_bad_flow_id_and_bad_file_are_one_line():
    res = runner.invoke(app, ["explain", str(SAMPLES / "relay-udp-dropped.pcapng"), "99", "--service-tags",
                              str(TAGS), "--no-wireshark"])
    assert res.exit_code == 2 and "no flow 99" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(app, ["explain", str(SAMPLES / "nope.pcap"), "1", "--no-wireshark"])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr


def test_without_tshark_one_clear_line(monkeypatch):
    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    doc = explain("relay-udp-dropped.pcapng", 7)
    assert doc["wireshark"]["status"] == "unavailable"
    text = ex.render_text(doc)
    tail = text.split("WIRESHARK\n", 1)[1].strip().splitlines()
    assert tail == ["tshark is not installed: Wireshark's dissection skipped (apt-get install tshark)"]


def test_reassembly_orders_segments_and_stops_at_a_gap():
    top = 0xFFFFFFF0  # across the sequence-number wrap
    assert ex.reassemble([(top, b"abcd"), (top + 8 & 0xFFFFFFFF, b"ijkl"), (top + 4, b"efgh")]) == b"abcdefghijkl"
    assert ex.reassemble([(100, b"abcd"), (102, b"cdef"), (110, b"zz")]) == b"abcdef"  # overlap kept once; gap stops


@pytest.mark.skipif(not HAVE_TSHARK, reason="tshark is not installed")
def test_wireshark_view_of_the_first_packets_even_inside_a_running_event_loop():
    async def notebook_cell():  # Jupyter runs cells inside an event loop: pyshark must not reuse it
        return explain("relay-udp-dropped.pcapng", 2)

    doc = asyncio.run(notebook_cell())
    ws = doc["wireshark"]
    assert ws["status"] == "ok", ws
    # the flow's first packets, tshark's frame numbers equal to ours
    assert [p["number"] for p in ws["packets"]] == [p["record"] for p in doc["packets"][:ex.WIRESHARK_PACKETS]]
    assert any("SYN" in e for e in ws["packets"][0]["expert"])
    assert "tcp" in {layer["name"] for layer in ws["packets"][0]["layers"]}
    assert ws["packets"][3]["highest_layer"] == "TLS"
    assert "expert: tcp: Connection establish request (SYN): server port 443" in ex.render_text(doc)


def test_hostile_strings_reach_the_terminal_as_escapes(tmp_path):
    from tests.report.test_html import IMG, SCRIPT, hostile_capture

    path = hostile_capture(tmp_path / "hostile.pcapng")
    r = meshpcap.analyze(path, service_tags=TAGS, use_cache=False)
    fid = next(v.flow.id for v in r.judgement.flows if v.flow.stun and v.flow.stun.realm)
    doc = meshpcap.explain(path, fid, service_tags=TAGS, use_cache=False, wireshark=False)
    err = next(m for m in doc["handshake"]["stun"] if m["error_code"] == 401)
    assert err["realm"] == SCRIPT and err["software"] == IMG and err["error_reason"] == IMG
    assert ex.printable("a\x1b[31mred\u2028b") == "a\\x1b[31mred\\u2028b"
    text = ex.render_text(doc)
    assert "\x1b" not in text and "\u2028" not in text and SCRIPT in text


def test_dns_flow_messages_are_decoded_again():
    doc = explain("relay-udp-dropped.pcapng", 1, wireshark=False)
    q, a = doc["handshake"]["dns"]
    assert (q["dir"], q["response"], q["qname"], q["qtype"]) == ("c2s", False, "mesh.office.com", "A")
    assert (a["dir"], a["rcode"], a["id"]) == ("s2c", "NOERROR", q["id"])
    assert a["answers"] == ["mesh-prod.trafficmanager.net", "meshprod-weu.westeurope.cloudapp.azure.com", "20.73.96.14"]
    assert [e["relation"] for e in doc["dns"]] == ["carried by this flow"]
    assert "DNS <- id" in ex.render_text(doc)
