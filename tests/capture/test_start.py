"""Capture.start: the walk begun before the caller takes its pairs (the reading child forked at once, for
the caller to load its rules meanwhile: pipeline.begin_read), the same pairs as batches_with, and a
begun walk that is never taken ends with its capture, its child reaped."""

from __future__ import annotations

import os

import numpy as np
import pytest

import meshpcap.capture.parallel as parallel_mod
from meshpcap import _child, settings
from meshpcap.capture import open_capture
from meshpcap.pipeline import _decode
from tests.conftest import SAMPLES, fork_pids, generated_capture, reaped

needs_fork = pytest.mark.skipif(not hasattr(os, "fork") or _child.cpus() < 2, reason="needs fork and two CPUs")


@pytest.fixture(scope="module")
def capture_file(tmp_path_factory):
    return generated_capture(tmp_path_factory, "start", 3000, 5)


def _columns(pairs) -> list[tuple]:
    """What a walk gave: each batch's columns and its decoded ports, as plain values."""
    out = []
    for batch, (decoded, _grouped) in pairs:
        out.append((batch.offset.tolist(), batch.caplen.tolist(), batch.ts_ns.tolist(), batch.first_record,
                    np.asarray(decoded.sport).tolist()))
    return out


@pytest.mark.parametrize("two_processes", [False, True])
def test_start_gives_the_pairs_batches_with_gives(capture_file, monkeypatch, two_processes):
    if two_processes:
        if not (hasattr(os, "fork") and _child.cpus() >= 2):
            pytest.skip("needs fork and two CPUs")
        monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    with open_capture(capture_file, batch_bytes=64 << 10) as cap:
        wanted = _columns(cap.batches_with(_decode))
    forks = fork_pids(monkeypatch)
    cap = open_capture(capture_file, batch_bytes=64 << 10)
    pairs = cap.start(_decode)
    assert len(forks) == (1 if two_processes else 0)  # the child is there before a pair is asked for
    got = _columns(pairs)
    assert got == wanted and len(got) > 3
    assert cap.info.records == sum(len(b[0]) for b in got)
    assert all(reaped(pid) for pid in forks)


@needs_fork
@pytest.mark.parametrize("how", ["close the capture", "close the pairs", "leave the block"])
def test_a_begun_walk_never_taken_ends_with_its_child(capture_file, monkeypatch, how):
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    forks = fork_pids(monkeypatch)
    if how == "leave the block":
        with open_capture(capture_file, batch_bytes=64 << 10) as cap:
            cap.start(_decode)
            assert len(forks) == 1 and not reaped(forks[0])
    else:
        cap = open_capture(capture_file, batch_bytes=64 << 10)
        pairs = cap.start(_decode)
        assert len(forks) == 1 and not reaped(forks[0])  # walking ahead
        (cap.close if how == "close the capture" else pairs.close)()
    assert reaped(forks[0])
    with pytest.raises(RuntimeError, match="single pass"):
        next(iter(cap.batches()))


def test_a_walk_taken_part_way_ends_with_its_capture(capture_file, monkeypatch):
    """A caller that stops after a few pairs (an error in its own work) and closes the capture: the child
    ends, and the file is closed."""
    if not (hasattr(os, "fork") and _child.cpus() >= 2) or settings.get().no_fork:
        pytest.skip("needs fork and two CPUs")
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    forks = fork_pids(monkeypatch)
    cap = open_capture(capture_file, batch_bytes=64 << 10)
    pairs = cap.start(_decode)
    next(pairs)
    next(pairs)
    cap.close()
    assert len(forks) == 1 and reaped(forks[0])
    assert cap._source.raw.closed


def test_start_on_a_small_file_walks_here(monkeypatch):
    """Below the two-process size nothing is forked: start only opens the walk."""
    forks = fork_pids(monkeypatch)
    with open_capture(SAMPLES / "single-room-teams.pcap") as cap:
        pairs = cap.start(_decode)
        assert not forks
        assert sum(len(b) for b, _ in pairs) == cap.info.records > 0
