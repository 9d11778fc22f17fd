"""The HTML report (meshpcap.report.html) and its firewall-ready lists (meshpcap.report.firewall).

The page is checked as text here (structure, self-containment, escaping, size, the embedded
document); tests/report/test_html_browser.py opens it in headless Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import struct
import sys
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

import meshpcap
from meshpcap.cli import app
from meshpcap.report import firewall
from meshpcap.report.html import (
    EMBED_PLAIN_LIMIT,
    embed_document,
    finding_view,
    read_embedded,
    render_html,
    render_html_document,
    script_json,
    wireshark_filter,
)
from tests.capture import writers as W
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"

# markup and script in every string a capture can carry into the page
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=2">'
BREAKOUT = "</script><!--<script>window.__pwned=3</script>\u2028\u2029"


@lru_cache(maxsize=None)
def report(name: str):
    return meshpcap.analyze(SAMPLES / name, service_tags=TAGS, use_cache=False)


@lru_cache(maxsize=None)
def page(name: str) -> str:
    return render_html(report(name))


class Elements(HTMLParser):
    """Every start tag with its attributes, the text of the page, and the raw content of each script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.styles: list[str] = []
        self._in: str | None = None
        self._attrs: dict = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag in ("script", "style"):
            self._in, self._attrs = tag, a
            (self.scripts.append((a, "")) if tag == "script" else self.styles.append(""))

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        elif self._in == "style":
            self.styles[-1] += data
        else:
            self.text.append(data)


def parse(text: str) -> Elements:
    p = Elements()
    p.feed(text)
    p.close()
    return p


def csp_of(p: Elements) -> str:
    metas = [a for t, a in p.tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert len(metas) == 1
    return metas[0]["content"]


def sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# ---------------------------------------------------------------- the page of a sample

def test_page_holds_every_section_of_the_report():
    r = report("relay-udp-dropped.pcapng")
    text = page("relay-udp-dropped.pcapng")
    p = parse(text)
    ids = {a.get("id") for _, a in p.tags}
    assert {"verdict", "checklist", "findings", "timeline", "clients", "flows", "flow-table", "dns", "firewall",
            "fw-text", "fw-panos", "fw-nftables", "fw-fortigate", "meshpcap-report"} <= ids
    body = "".join(p.text)
    assert r.verdict == "fail" and "fail" in body
    # every checklist rule with its status, and the evidence of the blocked one
    for c in r.judgement.checklist:
        assert c.rule in body
    assert "1 blocked (no-answer): flow 7 to 52.113.144.132" in body
    # findings: fix, client, first and last failing attempt, a Wireshark filter for the packets
    f1 = next(f for f in r.judgement.findings if f.id == "F1")
    assert f1.fix in body
    assert "ip.addr==52.113.144.132 && udp.port==3478" in body
    assert "2024-06-20T14:00:01.000000Z (+1.000 s)" in body  # first STUN request
    assert "2024-06-20T14:00:08.500000Z (+8.500 s)" in body  # its last retry
    # the timeline is inline SVG: a red bar for the dropped relay flow, the stop and the fallback marked
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert 'class="v-blocked"' in svg and 'class="v-allowed"' in svg
    assert "UDP media stopped" in svg and "fallback to TCP 443" in svg
    assert "5 STUN requests unanswered" in svg
    assert svg.count('class="dns-ok"') == len(r.flow_table.dns)
    # one row per flow that matters, unrelated ones counted
    rows = text[text.index('<table id="flow-table">'):].split("</table>")[0].count("<tr")
    assert rows == 1 + sum(1 for v in r.judgement.flows if v.verdict != "unrelated")
    assert "3 flows unrelated to the profile are not listed" in body
    # the per-client view names the client and what was blocked for it
    clients = text[text.index('<section id="clients">'):].split("</section>")[0]
    assert "10.20.0.15" in clients and "UDP 52.113.144.132:3478 (no-answer)" in clients and "F1" in clients


def test_embedded_document_is_the_report_document():
    r = report("relay-udp-dropped.pcapng")
    doc = read_embedded(page("relay-udp-dropped.pcapng"))
    assert doc == json.loads(json.dumps(r.to_dict(show_unrelated=False)))
    assert doc["schema"].startswith("meshpcap.report/")
    full = read_embedded(render_html(r, show_unrelated=True))
    assert len(full["flows"]) == len(r.judgement.flows)


def test_page_is_self_contained_and_its_policy_forbids_the_network():
    text = page("relay-udp-dropped.pcapng")
    p = parse(text)
    for tag, a in p.tags:
        assert "src" not in a, (tag, a)  # no external script, image, frame
        assert not (a.get("href") or "#").split("#")[0], (tag, a)  # only links within the page
        assert tag not in ("link", "iframe", "object", "embed", "img", "base", "form")
    css = "".join(p.styles)
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    csp = csp_of(p)
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "base-uri 'none'" in csp
    assert "unsafe" not in csp and "http" not in csp and "data:" not in csp
    # exactly two scripts: the document (not executed) and the page's own, allowed by its hash
    kinds = [a.get("type") for a, _ in p.scripts]
    assert kinds == ["application/json", None]
    assert sha(p.scripts[1][1]) in csp and sha(css) in csp
    # no inline style attribute or event handler (the policy would refuse them)
    assert not [a for _, a in p.tags if "style" in a or any(k.startswith("on") for k in a)]


def test_every_verdict_string_is_rendered():
    doc = json.loads(json.dumps(report("healthy-multi-room.pcapng").to_dict(False)))
    for verdict in ("pass", "fail", "inconclusive", "error"):
        doc["verdict"] = verdict
        text = render_html_document(doc)
        assert f'<header class="v-{verdict}" id="verdict">' in text
        assert f'<span class="badge b-{verdict}">{verdict}</span>' in text


def test_cli_writes_the_page(tmp_path):
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["analyze", str(SAMPLES / "reject-rst.pcapng"), "--service-tags", str(TAGS),
                                   "--format", "html", "-o", str(out)])
    assert res.exit_code == 1, res.output  # the sample fails
    doc = read_embedded(out.read_text(encoding="utf-8"))
    assert doc["verdict"] == "fail" and doc["findings"]


# ---------------------------------------------------------------- findings' derived fields

def test_finding_fields_are_derived_from_its_flows_when_absent():
    flows = {1: {"id": 1, "client": "10.0.0.2", "server": "52.113.144.132", "transport": "udp", "server_port": 3478,
                 "first_ns": 10, "last_ns": 50, "verdict": "blocked"},
             2: {"id": 2, "client": "10.0.0.1", "server": "52.113.144.133", "transport": "udp", "server_port": 3479,
                 "first_ns": 5, "last_ns": 70, "verdict": "blocked"},
             3: {"id": 3, "client": "10.0.0.3", "server": "2001:db8::1", "transport": "tcp", "server_port": 443,
                 "first_ns": 1, "last_ns": 90, "verdict": "allowed"}}
    v = finding_view({"id": "F1", "flow_ids": [1, 2, 3]}, flows)
    assert v["clients"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert (v["first_ns"], v["last_ns"]) == (5, 70)  # the failing attempts, not the fallback that worked
    assert v["filter"] == ("(ip.addr==52.113.144.132 && udp.port==3478) || "
                           "(ip.addr==52.113.144.133 && udp.port==3479)")
    # the judge branch's fields win when present
    v = finding_view({"id": "F1", "flow_ids": [1], "clients": ["192.0.2.9"], "first_ns": None, "last_ns": None}, flows)
    assert v["clients"] == ["192.0.2.9"] and v["first_ns"] is None
    assert wireshark_filter([flows[3]]) == "ipv6.addr==2001:db8::1 && tcp.port==443"
    dns = [{"ns": 40, "client": "10.0.0.9", "qname": "x.office.com", "rcode": "NXDOMAIN"},
           {"ns": 90, "client": "10.0.0.9", "qname": "x.office.com", "rcode": "SERVFAIL"},
           {"ns": 95, "client": "10.0.0.8", "qname": "x.office.com", "rcode": "NOERROR"}]
    v = finding_view({"id": "F2", "flow_ids": [], "blocked_by": "dns-failure", "destination": "x.office.com"}, flows, dns)
    assert (v["clients"], v["first_ns"], v["last_ns"]) == (["10.0.0.9"], 40, 90)
    assert v["filter"] == 'dns.qry.name == "x.office.com"'
    assert wireshark_filter([], 'a"b.example') == 'dns.qry.name == "a\\"b.example"'


# ---------------------------------------------------------------- hostile strings

def test_script_json_cannot_end_its_script_element():
    obj = {"a": SCRIPT, "b": BREAKOUT, "c": IMG, "d": "&amp; \u2028"}
    text = script_json(obj)
    for bad in ("</script", "<!--", "<script", "\u2028", "\u2029", "&", "<", ">"):
        assert bad not in text
    assert json.loads(text) == obj


def test_large_documents_are_embedded_compressed_and_read_back():
    doc = {"schema": "meshpcap.report/1", "flows": [{"id": i, "name": f"{BREAKOUT}{i}"} for i in range(8000)]}
    text = embed_document(doc)
    assert len(text) < EMBED_PLAIN_LIMIT and '"encoding":"gzip+base64"' in text
    page_text = f'<script type="application/json" id="meshpcap-report">{text}</script>'
    assert read_embedded(page_text) == doc
    small = {"schema": "meshpcap.report/1", "x": BREAKOUT}
    assert read_embedded(f'<script type="application/json" id="meshpcap-report">{embed_document(small)}</script>') \
        == small


sys.path.insert(0, str(SAMPLES))


def hostile_capture(path: Path) -> Path:
    """A session whose certificate subject and issuer, TURN realm, SNI, DNS names and file name carry
    markup and script (the SNI and DNS names fail host-name validation and are dropped; the rest
    reach the report)."""
    import datetime

    import make_samples as ms
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import UDP
    from scapy.packet import Raw

    from meshpcap.testing import tls

    key = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SCRIPT),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, IMG)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BREAKOUT)]))
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
            .not_valid_after(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
            .sign(key, None).public_bytes(serialization.Encoding.DER))
    cap = ms.Capture("hostile")
    t = ms.dns_exchange(cap, 0, "mesh.office.com") + 2 * ms.MS
    conn = ms.TcpConn(cap, ms.HOSTS["mesh.office.com"][1], ms.ephemeral_port(cap))
    t = conn.handshake(t, 20 * ms.MS)
    t = conn.send(t + ms.MS, True, tls.build_client_hello("mesh.office.com", alpn=("http/1.1",)))
    t = conn.send(t + 20 * ms.MS, False, tls.build_server_hello(0x0303, alpn="http/1.1")
                  + tls.build_certificate_record(cert))
    conn.close(t + 50 * ms.MS, 20 * ms.MS)
    # a hello whose SNI is markup, and a DNS query for markup: validation drops both names
    bad = ms.TcpConn(cap, "20.73.96.15", ms.ephemeral_port(cap))
    t = bad.handshake(t + 100 * ms.MS, 20 * ms.MS)
    bad.send(t + ms.MS, True, tls.build_client_hello("x.office.com", alpn=("h2",)).replace(
        b"x.office.com", b"<b>o</b>.xyz"))
    cap.emit(t + 200 * ms.MS, UDP(sport=5353, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname=SCRIPT)), ms.CLIENT,
             ms.GATEWAY)
    # a TURN Allocate refused with 401 whose REALM, SOFTWARE and reason phrase are markup
    from meshpcap.decode import stun
    from meshpcap.testing.stun import build_error_code, build_stun

    tid = bytes(range(12))
    sport = ms.ephemeral_port(cap)
    req = build_stun(ms.ALLOCATE, stun.REQUEST, [(stun.REQUESTED_TRANSPORT, b"\x11\x00\x00\x00")], tid,
                     fingerprint=True)
    resp = build_stun(ms.ALLOCATE, stun.ERROR, [build_error_code(401, IMG),
                                                (stun.REALM, SCRIPT.encode()), (stun.NONCE, b"n" * 16),
                                                (stun.SOFTWARE, IMG.encode())], tid, fingerprint=True)
    cap.emit(t + 300 * ms.MS, UDP(sport=sport, dport=3478) / Raw(req), ms.CLIENT, ms.RELAY)
    cap.emit(t + 322 * ms.MS, UDP(sport=3478, dport=sport) / Raw(resp), ms.RELAY, ms.CLIENT)
    path.write_bytes(ms.pcapng_bytes(cap))
    return path


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory) -> tuple[str, object]:
    d = tmp_path_factory.mktemp("hostile")
    path = hostile_capture(d / f"{IMG}.pcapng")
    r = meshpcap.analyze(path, service_tags=TAGS, use_cache=False)
    return render_html(r, show_unrelated=True), r


def test_hostile_strings_reach_the_report_and_the_page_shows_them_as_text(hostile_page):
    text, r = hostile_page
    f = next(v.flow for v in r.judgement.flows if v.flow.cert_subject)
    assert "window.__pwned=1" in f.cert_subject and "window.__pwned=3" in f.cert_issuer  # they survive decoding
    assert all("<b>" not in (v.flow.sni or "") for v in r.judgement.flows)  # the markup SNI was dropped
    p = parse(text)
    shown = "".join(p.text)
    assert f.cert_subject in shown  # shown as text, exactly
    assert IMG in shown  # the file name
    realm = next(v.flow.stun.realm for v in r.judgement.flows if v.flow.stun and v.flow.stun.realm)
    assert "window.__pwned=1" in realm and realm in shown  # the TURN realm, as text
    # nothing from the capture became markup: no element or attribute it could have made
    assert [a.get("type") for a, _ in p.scripts] == ["application/json", None]
    assert not [t for t, _ in p.tags if t in ("img", "b")]
    assert not [a for _, a in p.tags if any(k.startswith("on") for k in a)]
    assert "window.__pwned" not in p.scripts[1][1]
    from markupsafe import escape

    assert str(escape(f.cert_subject)) in text and "&lt;script\\&gt;window.__pwned=1" in text
    # the embedded document carries the strings unchanged
    doc = read_embedded(text)
    assert any(fl.get("cert_subject") == f.cert_subject for fl in doc["flows"])
    assert doc["capture"]["path"].endswith(f"{IMG}.pcapng")


# ---------------------------------------------------------------- size

def _ip4(src, dst, proto, l4):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return b"\x02\x00\x00\x00\x00\x0b\x02\x00\x00\x00\x00\x0a\x08\x00" + hdr + l4


def _tcp(sp, dp, flags, seq=1, ack=0):
    return struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 65535, 0, 0)


def _udp(sp, dp, payload):
    return struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload


def many_flows_capture(path: Path, n: int) -> Path:
    """n flows from 40 clients over 25 minutes: 65 % TCP 443 to AzureCloud (allowed), 5 % STUN to
    the relay range unanswered (blocked), 30 % elsewhere (unrelated)."""
    recs = []
    t = 1_718_892_000 * 10**9
    for i in range(n):
        c = f"10.20.{i % 40}.{10 + i % 200}"
        sp = 20000 + i % 40000
        t0 = t + i * 300_000_000
        k = i % 20
        if k < 13:
            s = f"20.73.{(i // 200) % 250}.{1 + i % 200}"
            pk = [(0, _ip4(c, s, 6, _tcp(sp, 443, 0x02))), (20, _ip4(s, c, 6, _tcp(443, sp, 0x12, 9, 2))),
                  (21, _ip4(c, s, 6, _tcp(sp, 443, 0x10, 2, 10)))]
        elif k < 14:
            s = f"52.112.{144 + i % 8}.{1 + i % 50}"
            stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + i.to_bytes(12, "big")
            pk = [(0, _ip4(c, s, 17, _udp(sp, 3478, stun))), (500, _ip4(c, s, 17, _udp(sp, 3478, stun)))]
        else:
            s = f"198.51.{100 + i % 3}.{1 + i % 250}"
            pk = [(0, _ip4(c, s, 6, _tcp(sp, 8443, 0x02))), (15, _ip4(s, c, 6, _tcp(8443, sp, 0x12, 9, 2)))]
        for ms_, data in pk:
            ns = t0 + ms_ * 1_000_000
            recs.append((ns // 10**9, ns % 10**9, data))
    recs.sort()
    path.write_bytes(W.pcap(recs, nano=True))
    return path


def test_page_of_5000_flows_stays_well_under_a_megabyte(tmp_path):
    r = meshpcap.analyze(many_flows_capture(tmp_path / "many.pcap", 5000), service_tags=TAGS, use_cache=False)
    assert len(r.judgement.flows) == 5000
    text = render_html(r)
    size = len(text.encode("utf-8"))
    assert size < 700_000, size  # README states the measured size (about 680 kB)
    doc = read_embedded(text)
    assert len(doc["flows"]) == 3500  # every flow that matters is in the document
    assert "more allowed flows are in the embedded document" in text
    assert text.count('class="v-blocked"') >= 150  # failing flows are drawn first on the timeline


# ---------------------------------------------------------------- firewall-ready lists

def test_firewall_parsing_of_the_checklist_texts():
    assert firewall.parse_ports("TCP 443 + UDP 3478-3481") == [("tcp", "443"), ("udp", "3478-3481")]
    assert firewall.parse_ports("TCP 80, 443") == [("tcp", "80,443")]
    assert firewall.parse_destination("*.office.com, teams.microsoft.com; 13.107.64.0/18, 52.112.0.0/14, "
                                      "52.122.0.0/15, 2603:1063::/38 (+3 more); the AzureCloud service tag") == (
        ["*.office.com", "teams.microsoft.com"], ["13.107.64.0/18", "52.112.0.0/14", "52.122.0.0/15", "2603:1063::/38"],
        3, "AzureCloud", False)
    assert firewall.parse_destination("any destination") == ([], [], 0, None, True)
    assert firewall.under("a.b.office.com", "*.office.com") and not firewall.under("office.com.evil", "*.office.com")
    assert not firewall.under("xoffice.com", "*.office.com") and firewall.under("Teams.Microsoft.com.", "teams.microsoft.com")
    assert firewall.address_ranges(["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.9", "2001:db8::1", "2001:db8::2"]) == \
        ["10.0.0.1-10.0.0.3", "10.0.0.9", "2001:db8::1-2001:db8::2"]
    assert firewall.safe_host("*.office.com") and firewall.safe_host("s-0005.s-msedge.net")
    for bad in ('a"b.com', "a b.com", "a\nb.com", "<b>.com", "-a.com", "", "a..com"):
        assert not firewall.safe_host(bad), bad


def test_firewall_lists_of_a_sample():
    doc = report("relay-udp-dropped.pcapng").to_dict(False)
    fw = firewall.build(doc)
    d4 = next(r for r in fw.rules if r.rule == "MR-D4")
    mesh = next(h for h in d4.hosts if h.name == "mesh.office.com")
    assert mesh.chain == ["mesh-prod.trafficmanager.net", "meshprod-weu.westeurope.cloudapp.azure.com"]
    assert mesh.addresses == ["20.73.96.14"] and mesh.sources == ["sni", "dns"]
    a4 = next(r for r in fw.rules if r.rule == "MR-A4")
    assert a4.addresses == ["52.113.144.132"] and a4.service_tag == "AzureCloud" and a4.ports == [("udp", "3478-3481")]
    out = firewall.render_all(doc)
    assert ("mesh.office.com -> CNAME mesh-prod.trafficmanager.net -> meshprod-weu.westeurope.cloudapp.azure.com"
            " -> 20.73.96.14  [sni, dns]") in out["text"]
    assert "the rule is the whole AzureCloud service tag" in out["text"] and "changeNumber 375" in out["text"]
    assert "52.113.144.132 meshpcap MR-A4 MR-A5" in out["panos"].splitlines()
    assert "*.office.com" in out["panos"].splitlines() and "mesh-prod.trafficmanager.net" in out["panos"].splitlines()
    nft = out["nftables"]
    assert "flags interval" in nft and "ip daddr @meshpcap_mr_a4_v4 udp dport { 3478-3481 } accept" in nft
    assert nft.count("{") == nft.count("}")
    forti = out["fortigate"]
    assert 'edit "meshpcap-mesh.office.com"\n        set type fqdn\n        set fqdn "mesh.office.com"' in forti
    assert "set subnet 52.113.144.132 255.255.255.255" in forti and forti.count("\nend") == 2


def test_firewall_lists_keep_unsafe_names_out_of_appliance_formats():
    doc = {"profile": {"id": "p"}, "checklist": [{"rule": 'R"1', "description": "x", "destination": "*.example.com",
                                                  "ports": "TCP 443", "requirement": "required", "status": "ok"}],
           "flows": [{"id": 1, "rule": 'R"1', "verdict": "allowed", "server": "192.0.2.1", "sni": 'a";b.example.com'},
                     {"id": 2, "rule": 'R"1', "verdict": "allowed", "server": "192.0.2.2", "sni": "ok.example.com"}],
           "dns": []}
    out = firewall.render_all(doc)
    for k in ("panos", "nftables", "fortigate"):
        assert 'a";b' not in out[k] and 'R"1' not in out[k]
        assert "ok.example.com" in out[k] or k == "nftables"
    assert "192.0.2.1-192.0.2.2" in out["nftables"] and "set type iprange" in out["fortigate"]


@pytest.mark.skipif(shutil.which("nft") is None, reason="nftables is not installed")
def test_nftables_output_passes_nft_check(tmp_path):
    """nft -c parses the ruleset without applying it (the sample, and IPv6, ranges and several ports)."""
    doc = {"profile": {"id": "p"}, "dns": [],
           "checklist": [{"rule": "T-1", "description": "x", "destination": "2603:1063::/38, 52.112.0.0/14",
                          "ports": "TCP 80, 443 + UDP 3478-3481", "requirement": "required", "status": "ok"}],
           "flows": [{"id": i, "rule": "T-1", "verdict": "allowed", "server": s}
                     for i, s in enumerate(["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::7", "198.51.100.1",
                                            "52.113.144.132", "2603:1063::9"])]}  # the last two: inside prefixes
    out = firewall.render_all(doc)["nftables"]
    assert "elements = { 52.112.0.0/14, 192.0.2.1-192.0.2.3, 198.51.100.1 }" in out  # no overlapping element
    assert "elements = { 2603:1063::/38, 2001:db8::7 }" in out
    for d in (report("relay-udp-dropped.pcapng").to_dict(False), doc):
        path = tmp_path / "rules.nft"
        path.write_text(firewall.render_all(d)["nftables"])
        res = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
        if res.returncode != 0 and ("Operation not permitted" in res.stderr or "netlink" in res.stderr.lower()):
            pytest.skip(f"nft -c cannot run here: {res.stderr.strip()}")
        assert res.returncode == 0, res.stderr


def test_dns_failure_on_the_timeline_and_its_filter():
    text = page("quic-and-ipv6.pcapng")
    svg = text[text.index("<svg"):text.index("</svg>")]
    assert svg.count('class="dns-fail"') == 1 and "DNS A mesh-telemetry.office.com: NXDOMAIN" in svg
    assert '<code class="filter">dns.qry.name == &#34;mesh-telemetry.office.com&#34;</code>' in text
    fw = firewall.build(report("quic-and-ipv6.pcapng").to_dict(False))
    failed = [h for r in fw.rules for h in r.hosts if h.dns_failed]
    assert [(h.name, h.dns_failed) for h in failed] == [("mesh-telemetry.office.com", "NXDOMAIN")]


def test_empty_capture_renders(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(W.pcap([]))
    r = meshpcap.analyze(path, service_tags=TAGS, use_cache=False)
    text = render_html(r)
    assert read_embedded(text)["flows"] == [] and "<svg" in text and "no client reached" in text


def test_firewall_lists_use_the_rules_in_full(shared_spec):
    """An M365 endpoint set lists more prefixes than the checklist's text shows: the document's
    profile.allow carries them all, and every list has every one."""
    r = meshpcap.analyze(SAMPLES / "single-room-teams.pcap", profile="single-room", service_tags=TAGS,
                         m365_endpoints=shared_spec / "m365-endpoints-worldwide.docs-2025043000.json", use_cache=False)
    doc = r.to_dict(False)
    item = next(c for c in doc["checklist"] if "more)" in c["destination"])
    full = next(a for a in doc["profile"]["allow"] if a["rule"] == item["rule"])
    assert len(full["cidrs"]) > 4
    fw = firewall.build(doc)
    rule = next(x for x in fw.rules if x.rule == item["rule"])
    assert rule.cidrs == full["cidrs"] and rule.cidrs_more == 0
    out = firewall.render_all(doc)
    for c in full["cidrs"]:
        assert c in out["panos"] and c in out["nftables"]


def test_page_and_markdown_lead_with_the_headline_and_the_rules_notice():
    # a capture judged by the 2024-06-12 rules as of 2026: the notice that they had been superseded is in the
    # first lines of every format, and the headline is the one that agrees with the exit code
    from meshpcap.report.html import render_html
    from meshpcap.report.markdown import render_markdown

    r = meshpcap.analyze(SAMPLES / "reject-icmp.pcapng", service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json",
                         use_cache=False, as_of="2026-01-05")
    notice = r.profile["notices"][0]["text"]
    assert "superseded on 2024-07-30" in notice
    head = r.to_dict()["headline"]
    assert head.startswith("FAIL: ") and r.exit_code == 1
    page = render_html(r)
    top = page[page.index('<header'):page.index('</header>')]
    assert head.replace("&", "&amp;").replace(">", "&gt;").replace("<", "&lt;") in top and "superseded on 2024-07-30" in top
    md_lines = render_markdown(r).splitlines()
    assert md_lines[0].startswith("# meshpcap: FAIL: ") and "(2024-06-12)" in md_lines[0]
    assert any("superseded on 2024-07-30" in line for line in md_lines[:4])
