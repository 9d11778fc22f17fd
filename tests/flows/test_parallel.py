"""The two-process paths (record walk in a forked child, naming split across two processes)
must give exactly what the single-process path gives.

They only switch on for large captures (64 MiB, 1000 flows); the tests lower the thresholds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import meshpcap.capture.pcap as pcap_mod
import meshpcap.flows.naming as naming_mod
from meshpcap.pipeline import read_flows
from tests.conftest import REPO, SAMPLES


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "small.pcap"
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), str(out), "--packets", "6000", "--seed", "7"],
                   check=True, capture_output=True)
    return out


def _both(path, monkeypatch, batch_bytes):
    monkeypatch.setenv("MESHPCAP_NO_FORK", "1")
    serial = read_flows(path, batch_bytes=batch_bytes).to_dict()
    monkeypatch.delenv("MESHPCAP_NO_FORK")
    monkeypatch.setattr(pcap_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(naming_mod, "PARALLEL_MIN_FLOWS", 1)
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    parallel = read_flows(path, batch_bytes=batch_bytes).to_dict()
    assert forks, "the two-process path was not taken"
    return serial, parallel


@pytest.mark.parametrize("batch_bytes", [64 << 10, 1 << 20])
def test_parallel_equals_serial_on_generated_capture(bench_capture, monkeypatch, batch_bytes):
    serial, parallel = _both(bench_capture, monkeypatch, batch_bytes)
    assert serial["flows"], "the generated capture has flows"
    assert parallel == serial


def test_parallel_equals_serial_on_sample(monkeypatch):
    serial, parallel = _both(SAMPLES / "single-room-teams.pcap", monkeypatch, 8 << 10)
    assert parallel == serial


def test_parallel_on_truncated_capture(bench_capture, tmp_path, monkeypatch):
    cut = tmp_path / "cut.pcap"
    data = bench_capture.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3 + 5])
    serial, parallel = _both(cut, monkeypatch, 64 << 10)
    assert serial["capture"]["truncated"] is not None
    assert parallel == serial


@pytest.mark.parametrize("batch_bytes", [16 << 10, 1 << 20])
def test_early_naming_changes_nothing(bench_capture, monkeypatch, batch_bytes):
    """TCP flows named while the capture is read get exactly the names of the final pass."""
    monkeypatch.setenv("MESHPCAP_NO_FORK", "1")
    done = []
    real_step = naming_mod.EarlyNamer.step

    def spy(self):
        real_step(self)
        done.append(len(self.done))

    monkeypatch.setattr(naming_mod.EarlyNamer, "step", spy)
    early = read_flows(bench_capture, batch_bytes=batch_bytes).to_dict()
    assert done and done[-1] > 0, "no flow was named early"
    monkeypatch.setattr(naming_mod.EarlyNamer, "step", lambda self: None)
    late = read_flows(bench_capture, batch_bytes=batch_bytes).to_dict()
    assert early == late


def test_arrays_from_the_reader_process_have_numpy_s_own_dtypes(bench_capture, monkeypatch):
    """Arrays unpickled with their own dtype objects send numpy down slow generic paths
    (ufunc.at ran 30 times slower); the reader's pickler sends dtypes by name instead."""
    import dataclasses

    import numpy as np

    from meshpcap.capture import open_capture
    from meshpcap.pipeline import _decode

    monkeypatch.setattr(pcap_mod, "PARALLEL_MIN_BYTES", 0)
    seen = 0
    with open_capture(bench_capture, batch_bytes=64 << 10) as cap:
        for batch, (decoded, grouped) in cap.batches_with(_decode):
            arrays = [batch.offset, batch.caplen, batch.ts_ns, batch.linktype]
            for obj in (decoded, grouped):
                arrays += [v for f in dataclasses.fields(obj) for v in [getattr(obj, f.name)] if isinstance(v, np.ndarray)]
            for a in arrays:
                assert a.dtype is np.dtype(a.dtype.type), a.dtype
            assert decoded.reason.flags.writeable
            seen += 1
    assert seen > 1
