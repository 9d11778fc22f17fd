"""A capture that shrinks or grows while it is read (issue 9 item 4) ends in a report that says
so, never in SIGBUS: a plain file is mapped only under a read lease (see source.FileGuard), so a
truncation waits until the reader has stopped touching its mapped chunk and gone over to reads.

The reader runs in a child process (a SIGBUS there fails the test instead of ending pytest);
after its first batch it starts another process that truncates the file, gives it a moment,
then touches every byte of the batch it holds (under the old mapping this is where SIGBUS came),
and waits for the truncation to be done at the next batch before reading on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.capture import writers as w
from tests.conftest import REPO

ENV = dict(os.environ, PYTHONPATH=str(REPO))

READER = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from meshpcap import settings
    import meshpcap.capture.parallel as parallel
    from meshpcap.capture import open_capture

    path, mode, action = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "two":
        parallel.PARALLEL_MIN_BYTES = 0
    else:
        settings.override(no_fork=True).__enter__()
    writer = None
    if action == "grow":  # a writer that still has the file open: never mapped
        writer = open(path, "ab")
    n = touched = 0
    with open_capture(path, batch_bytes=64 << 10) as cap:
        for i, b in enumerate(cap.batches()):
            if i == 1:
                if action == "shrink":
                    cut = subprocess.Popen([sys.executable, "-c",
                                            "import os, sys; os.truncate(sys.argv[1], 100_000)",  # inside this batch
                                            path])
                    try:
                        cut.wait(0.5)  # returns at once where nothing holds the truncation back
                    except subprocess.TimeoutExpired:
                        pass
                else:
                    writer.write(open(sys.argv[4], "rb").read())
                    writer.flush()
            if i == 2 and action == "shrink":
                cut.wait(60)  # the reader gave the lease up when it read this batch
            touched += sum(bytes(b.data[o:o + c]).count(b"x") for o, c in zip(b.offset.tolist(), b.caplen.tolist()))
            n += len(b)
        info = cap.info.to_dict()
    print(json.dumps({"n": n, "touched": touched, "info": info}))
""")


def _capture(tmp_path, packets: int):
    recs = [(i, 0, b"x" * 400 + i.to_bytes(4, "big")) for i in range(packets)]
    return w.pcap(recs)


@pytest.mark.parametrize("mode", ["one", "two"])
def test_truncated_while_read(tmp_path, mode):
    p = tmp_path / "c.pcap"
    p.write_bytes(_capture(tmp_path, 3000))  # 1.3 MB: about 20 chunks
    proc = subprocess.run([sys.executable, "-c", READER, str(p), mode, "shrink"], capture_output=True, text=True,
                          env=ENV, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)  # -7 was SIGBUS
    out = json.loads(proc.stdout)
    info = out["info"]
    assert 0 < out["n"] < 3000 and out["n"] == info["packets"]
    assert info["changed_while_read"]["size_at_end"] < info["changed_while_read"]["size_at_open"]
    assert "shrank while it was read" in info["truncated"]["reason"]


@pytest.mark.parametrize("mode", ["one"])  # a file open for writing is never mapped: no second process either
def test_grown_while_read(tmp_path, mode):
    p = tmp_path / "c.pcap"
    whole = _capture(tmp_path, 3000)
    half = 24 + 1500 * (16 + 404)
    p.write_bytes(whole[:half])
    rest = tmp_path / "rest"
    rest.write_bytes(whole[half:])
    proc = subprocess.run([sys.executable, "-c", READER, str(p), mode, "grow", str(rest)], capture_output=True,
                          text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    info = json.loads(proc.stdout)["info"]
    assert info["packets"] >= 1500
    assert info["changed_while_read"] == {"size_at_open": half, "size_at_end": len(whole)}
    assert "grew while it was read" in info["truncated"]["reason"]


def test_unchanged_file_says_nothing(tmp_path):
    from meshpcap.capture import open_capture

    p = tmp_path / "c.pcap"
    p.write_bytes(_capture(tmp_path, 300))
    with open_capture(p, batch_bytes=4096) as cap:
        assert sum(len(b) for b in cap.batches()) == 300
        assert cap.info.changed is None and cap.info.truncated is None
