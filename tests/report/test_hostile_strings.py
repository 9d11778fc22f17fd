"""Text from the capture cannot attack the reader of a report (issue 9, "Security").

A capture is built here whose server certificate's subject and issuer carry terminal escape
sequences (SGR colour, OSC 8 hyperlink, OSC 0 title), a C1 CSI, a bidi override, a new line
and Markdown/HTML markup; its ALPN id and STUN REALM carry escapes too, and the file itself
has a hostile name.  (Host names, SNI, HTTP Host and CONNECT targets are validated when they
are read and dropped when invalid, so the certificate names, ALPN, STUN REALM and the file name
are what reach the reports raw.)  Each output goes through the real CLI entry point.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from meshpcap.cli import app
from meshpcap.decode import stun
from meshpcap.testing import stun as build_stun_msgs, tls
from meshpcap.report.flows import cell
from meshpcap.report.sanitize import CsvWriter, csv_text, markdown_code, markdown_text, terminal_text
from tests import builders as B

runner = CliRunner()

HOSTILE = ("\x1b]8;;http://evil.example/\x07click\x1b]8;;\x07 \x1b]0;pwned\x07\x1b[31mRED\x1b[0m | *b* _u_ ~s~ `c` "
           "<b>x</b> &lt; [l](http://e) ![i](http://e/i.png) \u202e\x9b2J\r\nFAKE LINE")
ALPN = "h2\x1b[2J"
REALM = '=HYPERLINK("http://e")\x1b[31m'
FILE_NAME = "cap\x1b]0;pwned\x07 | *x* `y` [l](u) <i>\nz.pcap"
# what a terminal or a Markdown reader would act on; "\n" is allowed only between lines
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _certificate(subject: str, issuer: str) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"meshpcap hostile test").digest())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(datetime.datetime(2023, 1, 1)).not_valid_after(datetime.datetime(2030, 1, 1))
            .sign(key, None))
    return cert.public_bytes(serialization.Encoding.DER)


CERT = _certificate("subject " + HOSTILE.replace("\n", ""), "issuer " + HOSTILE)  # the subject: a CR alone
_loaded = x509.load_der_x509_certificate(CERT)
SUBJECT, ISSUER = _loaded.subject.rfc4514_string(), _loaded.issuer.rfc4514_string()  # what the decoder reports


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """TLS 1.2 to a Mesh endpoint (20.73.96.14, SNI mesh.office.com) served the hostile certificate
    (a tls-intercepted finding whose detail names its issuer), and a STUN Allocate with the REALM."""
    c, s = "10.0.0.1", "20.73.96.14"
    hello = tls.build_client_hello("mesh.office.com", alpn=(ALPN,))
    flight = tls.build_server_hello(0x0303) + tls.build_certificate_record(CERT)
    allocate = build_stun_msgs.build_stun(0x003, 0, [(stun.REALM, REALM.encode())], bytes(range(12)))
    ips = [B.tcp4(c, 50000, s, 443, "S", seq=1), B.tcp4(s, 443, c, 50000, "SA", seq=9, ack=2),
           B.tcp4(c, 50000, s, 443, "A", seq=2, ack=10),
           B.tcp4(c, 50000, s, 443, "PA", seq=2, ack=10, payload=hello),
           B.tcp4(s, 443, c, 50000, "PA", seq=10, ack=2 + len(hello), payload=flight),
           B.udp4(c, 50010, "52.112.0.11", 3478, allocate)]
    path = tmp_path_factory.mktemp("hostile") / FILE_NAME
    return B.write_pcap(path, [(B.T0 + i * 1000, B.ether(ip)) for i, ip in enumerate(ips)])


def _run(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.stdout + res.stderr
    return res


def _assert_terminal_safe(text: str) -> None:
    assert not RAW_CONTROL.search(text), repr(RAW_CONTROL.search(text).group())
    assert not any(line.startswith("FAKE") or line.startswith("z.pcap") for line in text.splitlines())


def test_flows_table_shows_escapes_and_never_sends_them(hostile):
    res = _run("flows", hostile)
    assert res.exit_code == 0, res.stderr
    _assert_terminal_safe(res.stdout)
    assert "cert issuer " + terminal_text(ISSUER) in res.stdout  # shown, visibly: \x1b[31mRED, \u202e, \x9b, \r\n
    assert "\\x1b[31mRED\\x1b[0m" in res.stdout and "\\u202e\\x9b2J\\r\\nFAKE LINE" in res.stdout
    assert "capture: " + terminal_text(str(hostile)) + " (pcap" in res.stdout


def test_analyze_table_shows_escapes_and_never_sends_them(hostile):
    res = _run("analyze", hostile)
    assert res.exit_code == 1, res.stdout + res.stderr  # the intercepted TLS is a blocked finding
    _assert_terminal_safe(res.stdout)
    assert "tls-intercepted" in res.stdout
    assert f"was served a certificate issued by {terminal_text(ISSUER)}, not by Microsoft" in res.stdout
    assert "capture: " + terminal_text(str(hostile)) + " (pcap" in res.stdout


def _markdown_html(text: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)


def test_markdown_escapes_markup_so_names_stay_text(hostile):
    res = _run("analyze", hostile, "--format", "markdown")
    assert res.exit_code == 1
    md = res.stdout
    _assert_terminal_safe(md)
    page = _markdown_html(md)
    # the hostile markup stays text: no link, image, HTML, emphasis or strike-through from it
    assert "<a " not in page and "<img" not in page and "<b>" not in page and "<i>" not in page
    spans = set(re.findall(r"<\w+>[^<]*</\w+>", page))
    assert not {"<em>b</em>", "<em>u</em>", "<s>s</s>", "<code>c</code>", "<em>x</em>", "<code>y</code>"} & spans
    # the rendered finding shows exactly the visible form of the issuer
    assert f"was served a certificate issued by {html.escape(terminal_text(ISSUER), quote=False)}, not" in page
    # the capture's name is one code span, whatever backticks it holds
    assert f"<code>{html.escape(terminal_text(str(hostile)), quote=False)}</code>" in page
    # every table keeps its columns: the header's count of cells in every row
    for table in re.findall(r"<table>.*?</table>", page, re.S):
        head, *rows = table.split("</tr>")
        width = len(re.findall(r"<th[ >]", head))
        assert width and all(len(re.findall(r"<td[ >]", row)) == width for row in rows if "<td" in row)


def test_json_is_exact(hostile):
    for cmd in (["flows", hostile, "--format", "json"], ["analyze", hostile, "--format", "json"]):
        res = _run(*cmd)
        assert res.exit_code in (0, 1), res.stderr
        assert not RAW_CONTROL.search(res.stdout) and res.stdout.isascii()  # the encoder escapes them
        doc = json.loads(res.stdout)
        assert doc["capture"]["path"] == str(hostile)
        tls_flow, stun_flow = doc["flows"]
        assert (tls_flow["cert_subject"], tls_flow["cert_issuer"], tls_flow["alpn"]) == (SUBJECT, ISSUER, [ALPN])
        assert stun_flow["stun"]["realm"] == REALM


def test_csv_cells_read_back_as_written_by_the_sender(hostile):
    """CSV is data: the hostile names come back exactly, numbers as numbers; a field holding a CR
    without a LF is quoted too (csv.writer with lineterminator="\\n" would write it bare: a broken row)."""
    res = _run("analyze", hostile, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(res.stdout_bytes.decode("utf-8"), newline="")))  # (.stdout folds CRLF)
    assert (rows[0]["cert_issuer"], rows[0]["cert_subject"], rows[0]["id"]) == (ISSUER, SUBJECT, "1")
    assert json.loads(rows[1]["stun"])["realm"] == REALM  # inside a JSON cell, which starts with "{"


FORMULAS = {"sni": "=HYPERLINK(\"http://evil\",\"x\")", "cert_issuer": "+cmd|' /C calc'!A0", "cert_subject": "-2+3",
            "http_host": "@SUM(A1)", "connect_target": "\t=1:443", "tls_version": "\r=1"}


def _formula_table(path):
    """A flow table whose flow 1 carries a formula in every text field a decoder fills from the wire
    (no decoder lets one through today: names are validated and certificate names start with an
    attribute type; the CSV writer does not rely on that) and a negative number."""
    from meshpcap import read_flows

    ft = read_flows(path)
    first = dataclasses.replace(ft.flows[0], first_ns=-5, **FORMULAS)
    return dataclasses.replace(ft, flows=[first] + ft.flows[1:])


def test_csv_neutralises_formulas_in_text_never_in_numbers(hostile):
    from meshpcap import analyze
    from meshpcap.report.analysis import render_report
    from meshpcap.report.flows import render_flows

    ft = _formula_table(hostile)
    for text in (render_flows(ft, "csv"), render_report(analyze(ft), "csv")):
        row = next(csv.DictReader(io.StringIO(text)))
        assert {k: row[k] for k in FORMULAS} == {k: "'" + v for k, v in FORMULAS.items()}
        assert (row["first_ns"], row["id"], row["server_port"]) == ("-5", "1", "443")


def test_a_file_name_in_an_error_is_one_visible_line(tmp_path):
    missing = tmp_path / "gone\x1b]0;pwned\x07\nmeshpcap: all good.pcap"
    for cmd in ("flows", "analyze"):
        res = _run(cmd, missing)
        assert res.exit_code == 2
        assert len(res.stderr.splitlines()) == 1 and not RAW_CONTROL.search(res.stderr)
        assert "gone\\x1b]0;pwned\\x07\\nmeshpcap: all good.pcap" in res.stderr


@pytest.mark.skipif(sys.platform != "linux", reason="file names of arbitrary bytes: Linux")
def test_a_file_name_that_is_not_utf8_is_shown_not_a_traceback(tmp_path, hostile):
    """os.fsdecode turns the byte 0xff into a lone surrogate, which no encoder writes: shown as \\udcff."""
    path = os.fsencode(tmp_path) + b"/bad\xff\x1b[2J.pcap"
    with open(hostile, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    entry = [sys.executable, "-c", "from meshpcap.cli import main; main()"]
    for args in (["flows", path], ["analyze", path], ["analyze", path, "--format", "markdown"]):
        proc = subprocess.run(entry + args, capture_output=True, timeout=120,
                              env={**os.environ, "PYTHONIOENCODING": "utf-8"})
        out = proc.stdout.decode("utf-8")
        assert proc.returncode in (0, 1), proc.stderr.decode("utf-8", "replace")
        assert "bad\\udcff\\x1b[2J.pcap" in out


def test_sanitizers():
    assert terminal_text("a\x1b[31mb\x9bc\x7f\x00\u202e\u2028\udcff\t\r\n") == \
        "a\\x1b[31mb\\x9bc\\x7f\\x00\\u202e\\u2028\\udcff\\t\\r\\n"
    assert terminal_text("café ☕ 日本") == "café ☕ 日本"  # printable text stays as it is
    assert markdown_text("a|b*c_d`e<f>[g](h)~i&j\\k") == "a\\|b\\*c\\_d\\`e\\<f\\>\\[g\\](h)\\~i\\&j\\\\k"
    assert markdown_code("x") == "`x`" and markdown_code("a`b") == "``a`b``" and markdown_code("`a") == "`` `a ``"
    assert [csv_text(s) for s in ("=1", "+1", "-1", "@a", "\tx", "\rx", "a=1", "")] == \
        ["'=1", "'+1", "'-1", "'@a", "'\tx", "'\rx", "a=1", ""]
    assert (cell(-3), cell(-2.5), cell(True), cell(None), cell(["=x"])) == ("-3", "-2.5", "true", "", '["=x"]')
    rows = [["1", "a,b", 'q"q', "l\nf"], ["2", "cr\ronly", "", "x"]]
    plain, ours = io.StringIO(), io.StringIO()
    csv.writer(plain, lineterminator="\n").writerows(rows[:1])
    CsvWriter(ours).writerows(rows)
    assert ours.getvalue() == plain.getvalue() + '2,"cr\ronly",,x\n'  # as the csv module writes, plus the CR quoted
    assert list(csv.reader(io.StringIO(ours.getvalue(), newline=""))) == rows
