"""`meshpcap flows`: the three formats, -o, and one-line errors with exit 2 for bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from meshpcap.cli import app
from meshpcap.flows.model import FLOW_COLUMNS, FLOWS_SCHEMA
from tests import builders as B
from tests.conftest import REPO, SAMPLES

SAMPLE = SAMPLES / "reject-icmp.pcapng"
runner = CliRunner()


@pytest.fixture
def sample():
    if not SAMPLE.is_file():
        pytest.skip("samples/reject-icmp.pcapng is missing")
    return SAMPLE


@pytest.fixture
def small(tmp_path):
    """A capture built here, so the exact output can be checked."""
    ips = [B.tcp4("10.0.0.1", 50000, "52.112.0.10", 443, "S", seq=1),
           B.tcp4("52.112.0.10", 443, "10.0.0.1", 50000, "SA", seq=9, ack=2),
           B.udp4("10.0.0.1", 50006, "52.112.0.11", 3479, b"x" * 12)]
    return B.write_pcap(tmp_path / "small.pcap", [(B.T0 + i * 1000, B.ether(ip)) for i, ip in enumerate(ips)])


def _run(*args):
    res = runner.invoke(app, ["flows", *map(str, args)])
    assert "Traceback" not in res.stdout + res.stderr
    return res


def test_table(sample):
    res = _run(sample)
    assert res.exit_code == 0, res.stderr
    assert "flows:" in res.stdout and "client" in res.stdout and "state" in res.stdout


def test_table_of_a_built_capture(small):
    res = _run(small, "--no-names")
    assert res.exit_code == 0
    assert "10.0.0.1:50000" in res.stdout and "52.112.0.10:443" in res.stdout
    assert "established" in res.stdout and "one-way" in res.stdout
    assert "flows: 2" in res.stdout


def test_json(sample):
    res = _run(sample, "--format", "json")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["schema"] == FLOWS_SCHEMA == "meshpcap.flows/2"
    assert {"schema", "capture", "flows", "dns", "stats"} <= set(doc)
    for key in ("path", "format", "link_types", "packets", "bytes", "first_ns", "last_ns", "truncated", "undecoded",
                "decoded", "dropped_by_capture"):
        assert key in doc["capture"]
    c = doc["capture"]
    assert c["packets"] == c["decoded"] + sum(c["undecoded"].values())
    assert doc["flows"] and all(set(f) == set(FLOW_COLUMNS) for f in doc["flows"])
    assert any(f["icmp_errors"] for f in doc["flows"])


def test_json_of_a_built_capture(small):
    doc = json.loads(_run(small, "-f", "json", "--no-names").stdout)
    tcp, udp = doc["flows"]
    assert (tcp["client"], tcp["client_port"], tcp["server"], tcp["server_port"]) == ("10.0.0.1", 50000, "52.112.0.10", 443)
    assert (tcp["packets_c2s"], tcp["packets_s2c"], tcp["bytes_c2s"], tcp["bytes_s2c"]) == (1, 1, 40, 40)
    assert (tcp["first_ns"], tcp["last_ns"]) == (B.T0, B.T0 + 1000)
    assert (udp["transport"], udp["state"], udp["bytes_c2s"]) == ("udp", "one-way", 20 + 8 + 12)
    assert doc["capture"]["link_types"] == ["ethernet"] and doc["capture"]["packets"] == 3


def test_csv(sample):
    res = _run(sample, "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert tuple(rows[0]) == FLOW_COLUMNS
    assert len(rows) > 1 and all(len(r) == len(FLOW_COLUMNS) for r in rows)


def test_output_file(small, tmp_path):
    out = tmp_path / "flows.json"
    res = _run(small, "-f", "json", "-o", out)
    assert res.exit_code == 0 and res.stdout == ""
    assert json.loads(out.read_text())["schema"] == "meshpcap.flows/2"
    out_csv = tmp_path / "flows.csv"
    assert _run(small, "--format", "csv", "--output", out_csv).exit_code == 0
    assert out_csv.read_text().splitlines()[0] == ",".join(FLOW_COLUMNS)


@pytest.mark.parametrize("name, check", [
    ("flows.json", lambda t: json.loads(t)["schema"] == "meshpcap.flows/2"),
    ("flows.JSON", lambda t: json.loads(t)["schema"] == "meshpcap.flows/2"),
    ("flows.csv", lambda t: t.splitlines()[0] == ",".join(FLOW_COLUMNS)),
    ("flows.txt", lambda t: "flows: 2" in t and "10.0.0.1:50000" in t),
])
def test_output_format_from_the_extension(small, tmp_path, name, check):
    out = tmp_path / name
    res = _run(small, "--no-names", "-o", out)
    assert res.exit_code == 0 and res.stdout == "", res.stderr
    assert check(out.read_text())
    # --format wins over the extension
    assert _run(small, "--no-names", "-o", out, "--format", "table").exit_code == 0
    assert "flows: 2" in out.read_text()


@pytest.mark.parametrize("name", ["flows.xyz", "flows.md", "flows"])
def test_output_extension_unknown_is_one_line(small, tmp_path, name):
    out = tmp_path / name
    res = _run(small, "-o", out)
    assert res.exit_code == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"meshpcap: {out}: cannot tell the format from the extension")
    assert lines[0].endswith("(known: .csv, .json, .txt): give --format")  # no Markdown for flows
    assert not out.exists()
    # with --format any name will do
    assert _run(small, "-o", out, "--format", "csv").exit_code == 0
    assert out.read_text().splitlines()[0] == ",".join(FLOW_COLUMNS)


def test_output_to_a_missing_directory_is_a_clean_error(small, tmp_path):
    res = _run(small, "-o", tmp_path / "nope" / "out.txt")
    assert res.exit_code == 2
    assert res.stderr.startswith("meshpcap: ") and len(res.stderr.strip().splitlines()) == 1


def _bad_inputs(tmp_path):
    d = tmp_path / "a-directory"
    d.mkdir()
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    text = tmp_path / "notes.txt"
    text.write_text("this is not a capture\n")
    cut = tmp_path / "cut-header.pcap"
    cut.write_bytes(struct.pack("<IHH", 0xA1B2C3D4, 2, 4))  # 8 of the 24 header bytes
    cutng = tmp_path / "cut-header.pcapng"
    cutng.write_bytes(b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c")
    etl = tmp_path / "pktmon.etl"  # Windows event trace: buffer size then WMI buffer header, no pcap magic
    etl.write_bytes(struct.pack("<II", 0x10000, 0x000C0002) + b"\0" * 56 + bytes(range(256)) * 4)
    return {
        "missing": tmp_path / "missing.pcap",
        "directory": d,
        "empty": empty,
        "text": text,
        "cut-header": cut,
        "cut-pcapng-header": cutng,
        "etl": etl,
    }


BAD = ["missing", "directory", "empty", "text", "cut-header", "cut-pcapng-header", "etl"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_input_is_one_line_and_exit_2(tmp_path, kind):
    path = _bad_inputs(tmp_path)[kind]
    res = _run(path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"meshpcap: {path}: ")
    assert res.stdout == ""


def test_bad_input_through_the_real_entry_point(tmp_path):
    path = _bad_inputs(tmp_path)["text"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", "from meshpcap.cli import main; main()", "flows", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith(f"meshpcap: {path}: ")


def test_truncated_capture_is_not_an_error(small, tmp_path):
    data = small.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:-10])
    res = _run(cut, "-f", "json", "--no-names")
    assert res.exit_code == 0
    doc = json.loads(res.stdout)
    assert doc["capture"]["truncated"] is not None and len(doc["flows"]) == 1


def test_real_entry_point_flushes_its_output_before_leaving(tmp_path):
    """main() leaves with os._exit (no interpreter teardown): stdout, files and exit codes must be whole."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    entry = [sys.executable, "-c", "from meshpcap.cli import main; main()"]
    sample = SAMPLES / "reject-icmp.pcapng"
    proc = subprocess.run(entry + ["flows", str(sample), "--format", "json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == json.loads(runner.invoke(app, ["flows", str(sample), "--format", "json"]).stdout)
    out = tmp_path / "flows.csv"
    proc = subprocess.run(entry + ["flows", str(sample), "--format", "csv", "-o", str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout == "" and out.read_text().count("\n") > 2
    proc = subprocess.run(entry + ["analyze", str(sample), "--service-tags", str(SAMPLES / "ServiceTags_Public_SAMPLE.json"),
                                   "--format", "json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1  # the sample's blocked relay
    assert json.loads(proc.stdout)["verdict"] == "fail"



@pytest.mark.parametrize("command", ["flows", "analyze"])
def test_max_flows_is_one_line_and_exit_2(small, command):
    # small has 2 flows
    ok = runner.invoke(app, [command, str(small), "--max-flows", "2"])
    assert ok.exit_code in (0, 1, 3) and ok.stderr == "", ok.stderr  # 3: analyze finds no session in it
    assert runner.invoke(app, [command, str(small), "--max-flows", "0"]).exit_code == ok.exit_code  # 0: no limit
    res = runner.invoke(app, [command, str(small), "--max-flows", "1"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [res.stderr.strip()]
    assert res.stderr.startswith(f"meshpcap: {small}: more than 1 flows (the --max-flows limit")
    assert res.stdout == ""


def test_max_flows_default_is_the_engines():
    from meshpcap import cli
    from meshpcap.flows import engine

    assert cli.DEFAULT_MAX_FLOWS == engine.DEFAULT_MAX_FLOWS  # cli keeps its own copy: no numpy for --help
