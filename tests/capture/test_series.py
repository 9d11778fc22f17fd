"""Files that continue one another (issue 12 section 3): ``read_flows([part1, part2, ...])``,
``meshpcap analyze part_1 part_2 ...`` and ``--series DIR`` read them as one capture, in the
order of their first packets; a flow that crosses a file boundary is one flow; the capture info
lists the files with their time spans and the gaps between them."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from meshpcap.cli import app
from meshpcap.errors import CaptureError
from meshpcap.pipeline import read_flows
from tests.capture import writers as w
from tests.conftest import SAMPLES

SAMPLE = SAMPLES / "single-room-teams.pcap"
TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"
needs_editcap = pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap is not installed")
runner = CliRunner()


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The sample split by editcap every 70 packets (mid-flow: its TLS flows run across parts)."""
    if shutil.which("editcap") is None:
        pytest.skip("editcap is not installed")
    d = tmp_path_factory.mktemp("split")
    subprocess.run(["editcap", "-c", "70", "--", str(SAMPLE), str(d / "part.pcapng")], check=True,
                   capture_output=True, timeout=60)
    files = sorted(str(p) for p in d.iterdir())
    assert len(files) == 4
    return files


def _same_flows(a, b):
    assert a.flows == b.flows and a.dns == b.dns and a.stats == b.stats


def test_split_capture_reads_as_the_whole(parts):
    whole = read_flows(SAMPLE)
    series = read_flows(list(reversed(parts)))  # the order given does not matter: first packets decide
    _same_flows(series, whole)
    cap = series.capture
    assert cap["packets"] == whole.capture["packets"] == 212
    assert [f["path"] for f in cap["files"]] == parts and [f["packets"] for f in cap["files"]] == [70, 70, 70, 2]
    assert cap["files"][0]["gap_before_ns"] is None
    for before, after in zip(cap["files"], cap["files"][1:]):
        assert after["gap_before_ns"] == after["first_ns"] - before["last_ns"] >= 0
    # flows that cross a boundary are one flow
    bounds = [f["first_ns"] for f in cap["files"][1:]]
    crossing = [f for f in series.flows if any(f.first_ns < b <= f.last_ns for b in bounds)]
    assert crossing and len(series.flows) == len(whole.flows)


def test_analyze_several_files_and_series_dir(parts, tmp_path):
    one = runner.invoke(app, ["analyze", str(SAMPLE), "--profile", "single-room", "--service-tags", str(TAGS),
                              "-f", "json"])
    many = runner.invoke(app, ["analyze", *parts, "--profile", "single-room", "--service-tags", str(TAGS),
                               "-f", "json"])
    d = tmp_path / "ring"
    d.mkdir()
    for p in parts:
        shutil.copy(p, d)
    (d / "README.txt").write_text("not a capture, skipped")
    by_dir = runner.invoke(app, ["analyze", "--series", str(d), "--profile", "single-room", "--service-tags",
                                 str(TAGS), "-f", "json"])
    assert one.exit_code == many.exit_code == by_dir.exit_code, (one.output, many.output, by_dir.output)
    a, b, c = (json.loads(r.stdout) for r in (one, many, by_dir))
    assert len(b["capture"]["files"]) == len(c["capture"]["files"]) == 4
    for doc in (a, b, c):
        doc.pop("capture")
    assert a == b == c


def test_gap_and_overlap_between_files(tmp_path):
    p1, p2, p3 = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    p1.write_bytes(w.pcap([(100, 0, b"\0" * 20), (101, 0, b"\0" * 20)]))
    p2.write_bytes(w.pcap([(161, 0, b"\0" * 20), (170, 0, b"\0" * 20)]))  # a minute later
    p3.write_bytes(w.pcap([(165, 0, b"\0" * 20)]))  # overlaps b
    cap = read_flows([p2, p3, p1], names=False).capture
    assert [f["path"] for f in cap["files"]] == [str(p1), str(p2), str(p3)]
    assert [f["gap_before_ns"] for f in cap["files"]] == [None, 60 * 10**9, -5 * 10**9]
    assert cap["packets"] == 5 and cap["first_ns"] == 100 * 10**9 and cap["last_ns"] == 170 * 10**9


def test_a_cut_last_file_is_the_series_truncation(tmp_path):
    p1, p2 = tmp_path / "a.pcap", tmp_path / "b.pcap"
    p1.write_bytes(w.pcap([(100, 0, b"\0" * 20)]))
    p2.write_bytes(w.pcap([(101, 0, b"\0" * 20), (102, 0, b"\0" * 20)])[:-5])  # still being written
    cap = read_flows([p1, p2], names=False).capture
    assert cap["packets"] == 2 and cap["truncated"]["file"] == str(p2) and cap["truncated"]["record"] == 2


def test_unreadable_member_and_empty_list_are_capture_errors(tmp_path):
    good = tmp_path / "a.pcap"
    good.write_bytes(w.pcap([(100, 0, b"\0" * 20)]))
    bad = tmp_path / "b.pcap"
    bad.write_text("hello")
    with pytest.raises(CaptureError, match="b.pcap"):
        read_flows([good, bad])
    with pytest.raises(CaptureError):
        read_flows([])
    res = runner.invoke(app, ["analyze", "--series", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not a directory" in res.stderr


def test_a_pipe_cannot_be_one_of_several_files(tmp_path):
    good = tmp_path / "a.pcap"
    good.write_bytes(w.pcap([(100, 0, b"\0" * 20)]))
    with pytest.raises(CaptureError, match="standard input: one of several files must be a regular file"):
        read_flows([good, "-"])
    with pytest.raises(CaptureError, match="no such file"):
        read_flows([good, tmp_path / "missing.pcap"])
