"""Captures from pipes (issue 8 section 4): ``tcpdump -w - | meshpcap analyze -``, a FIFO,
``<(zcat x.pcap.gz)`` and /dev/stdin are read as streams (no seek, no mapping), compressed or
not, through the real entry point; the result is the one the file gives."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import threading

import pytest
import zstandard
from typer.testing import CliRunner

from meshpcap.capture import open_capture
from meshpcap.cli import app
from meshpcap.errors import CaptureError
from tests.conftest import REPO, SAMPLES

ENTRY = [sys.executable, "-c", "from meshpcap.cli import main; main()"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))
SAMPLE = SAMPLES / "reject-icmp.pcapng"
TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


def _run(args, **kw):
    return subprocess.run(ENTRY + args, capture_output=True, env=ENV, timeout=120, **kw)


def _doc(out: bytes) -> dict:
    doc = json.loads(out)
    doc["capture"].pop("path")
    return doc


class _Done:  # what the in-process CLI gives, as the subprocess result the tests compare with
    def __init__(self, res):
        self.returncode, self.stdout = res.exit_code, res.stdout.encode()


@pytest.fixture(scope="module")
def from_file():
    res = CliRunner().invoke(app, ["flows", str(SAMPLE), "--format", "json"])
    assert res.exit_code == 0, res.output
    return _doc(res.stdout)


@pytest.fixture(scope="module")
def analyzed_file():
    return _Done(CliRunner().invoke(app, ["analyze", str(SAMPLE), "--service-tags", str(TAGS), "--format", "json"]))


@pytest.mark.parametrize("wrap", ["zstd"])
def test_analyze_from_standard_input(wrap, analyzed_file):
    data = SAMPLE.read_bytes()
    if wrap == "gzip":
        data = gzip.compress(data)
    elif wrap == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    want = analyzed_file
    got = _run(["analyze", "-", "--service-tags", str(TAGS), "--format", "json"], input=data)
    assert got.returncode == want.returncode == 1, got.stderr  # the sample's blocked relay
    assert b"Traceback" not in got.stderr
    a, b = json.loads(got.stdout), json.loads(want.stdout)
    assert a["capture"]["compression"] == wrap
    for d in (a, b):
        d["capture"].pop("path")
        d["capture"].pop("compression")
    assert a == b


def test_dev_stdin_gzip(from_file):
    got = _run(["flows", "/dev/stdin", "--format", "json"], input=gzip.compress(SAMPLE.read_bytes()))
    assert got.returncode == 0, got.stderr
    doc = _doc(got.stdout)
    assert doc["capture"].pop("compression") == "gzip"
    from_file = dict(from_file, capture={k: v for k, v in from_file["capture"].items() if k != "compression"})
    assert doc == from_file


@needs_fifo
@pytest.mark.parametrize("wrap", [None])
def test_fifo(tmp_path, from_file, wrap):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    data = SAMPLE.read_bytes() if wrap is None else gzip.compress(SAMPLE.read_bytes())

    def writer():
        with open(fifo, "wb") as f:
            for i in range(0, len(data), 1000):  # small writes, as tcpdump makes
                f.write(data[i:i + 1000])
                f.flush()

    t = threading.Thread(target=writer)
    t.start()
    got = _run(["flows", str(fifo), "--format", "json"])
    t.join(timeout=60)
    assert got.returncode == 0, got.stderr
    doc = _doc(got.stdout)
    assert doc["capture"].pop("compression") == wrap
    assert doc == dict(from_file, capture={k: v for k, v in from_file["capture"].items() if k != "compression"})


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("zcat") is None, reason="needs bash and zcat")
def test_process_substitution(tmp_path, from_file):
    gz = tmp_path / "x.pcapng.gz"
    gz.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    cmd = " ".join(f"'{a}'" for a in ENTRY) + f" flows <(zcat '{gz}') --format json"
    got = subprocess.run(["bash", "-c", cmd], capture_output=True, env=ENV, timeout=120)
    assert got.returncode == 0, got.stderr
    doc = _doc(got.stdout)
    assert doc == from_file  # zcat hands out the plain capture


@pytest.mark.parametrize("data,problem", [(b"hello, world\n", "not a pcap or pcapng capture")])
def test_bad_standard_input_is_one_line(data, problem):
    got = _run(["analyze", "-"], input=data)
    assert got.returncode == 2
    err = got.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("meshpcap: standard input: ") and problem in err


@pytest.mark.parametrize("cut", [False, True])
def test_open_capture_on_a_pipe_never_seeks(cut):
    """The library on an os.pipe, gzip-compressed: every batch arrives, nothing is mapped; a cut
    stream is a truncated capture."""
    whole = gzip.compress(SAMPLE.read_bytes())
    data = whole[: len(whole) * 2 // 3] if cut else whole
    rfd, wfd = os.pipe()

    def writer():
        with os.fdopen(wfd, "wb") as f:
            f.write(data)

    t = threading.Thread(target=writer)
    t.start()
    with open_capture(f"/dev/fd/{rfd}", batch_bytes=512) as cap:
        n = 0
        for b in cap.batches():
            assert isinstance(b.data, bytes)
            n += len(b)
        truncated = cap.info.truncated
    t.join()
    os.close(rfd)
    with open_capture(SAMPLE) as cap:
        total = sum(len(b) for b in cap.batches())
    if cut:
        assert 0 < n < total and "cut" in truncated["reason"]
    else:
        assert n == total > 0 and truncated is None


def test_standard_input_closed_is_a_capture_error(monkeypatch):
    rfd, wfd = os.pipe()
    os.close(wfd)
    saved = os.dup(0)
    try:
        os.dup2(rfd, 0)
        with pytest.raises(CaptureError, match="standard input: empty file"):
            open_capture("-")
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(rfd)
