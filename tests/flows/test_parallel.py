"""The two-process paths (record walk in a forked child, for pcap and pcapng; naming split
across two processes) must give exactly what the single-process path gives, also when the
reading child dies part way.

They only switch on for large captures (64 MiB, 8000 flows); the tests lower the thresholds.
"""

from __future__ import annotations

import os

import pytest

import meshpcap.capture.parallel as parallel_mod
import meshpcap.flows.naming as naming_mod
from meshpcap import _child, settings
from meshpcap.pipeline import read_flows
from tests.conftest import SAMPLES, generated_capture

# The two-process paths need a spare CPU (and fork); on one CPU they are never taken.
pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or _child.cpus() < 2, reason="needs fork and two CPUs")


def _serial(path, batch_bytes):
    with settings.override(no_fork=True):
        return read_flows(path, batch_bytes=batch_bytes).to_dict()


def _count_forks(monkeypatch) -> list:
    forks = []
    real_fork = os.fork

    def counting_fork():
        forks.append(1)
        return real_fork()

    monkeypatch.setattr(os, "fork", counting_fork)
    return forks


@pytest.fixture(scope="module")
def bench_capture(tmp_path_factory):
    return generated_capture(tmp_path_factory, "bench", 6000, 7)


def _both(path, monkeypatch, batch_bytes):
    forks = _count_forks(monkeypatch)
    serial = _serial(path, batch_bytes)
    assert not forks, "MESHPCAP_NO_FORK forked"
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(naming_mod, "PARALLEL_MIN_FLOWS", 1)
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
    monkeypatch.setattr(settings, "_current", settings.Settings(no_fork=True))
    done = []
    real_step = naming_mod.EarlyNamer.step

    def spy(self):
        real_step(self)
        done.append(len(self.done))
        # a flow named early lets its payloads go (its key stays: naming_jobs lists it)
        kept.append(sum(len(self.builder.evidence[f]) for f in self.done))

    kept: list[int] = []
    monkeypatch.setattr(naming_mod.EarlyNamer, "step", spy)
    early = read_flows(bench_capture, batch_bytes=batch_bytes).to_dict()
    assert done and done[-1] > 0, "no flow was named early"
    assert set(kept) == {0}
    monkeypatch.setattr(naming_mod.EarlyNamer, "step", lambda self: None)
    late = read_flows(bench_capture, batch_bytes=batch_bytes).to_dict()
    assert early == late


def test_flows_named_ahead_change_nothing(bench_capture, monkeypatch):
    """Flows named ahead (EarlyNamer.speculate, run here after every batch until it has nothing left, as
    the reader process lets it while it waits) get exactly the names of the final pass; a guess (of a
    flow's names, or of a DNS flow's part of the DNS pass) is taken only while the flow's evidence is as
    it was when the guess was made: a stale guess, however wrong, changes nothing."""
    monkeypatch.setattr(settings, "_current", settings.Settings(no_fork=True))

    def ahead(self):  # no flow named as final (step's own work): every name comes from a guess or the end
        self._added = True
        while self.speculate():
            pass

    seen = {}
    real_name_flows = naming_mod.name_flows

    def spy(raw, jobs, early=None):
        seen.setdefault("at_end", (raw, jobs, early))  # the first read's
        return real_name_flows(raw, jobs, early)

    monkeypatch.setattr(naming_mod.EarlyNamer, "step", ahead)
    monkeypatch.setattr(naming_mod, "name_flows", spy)
    guessed = read_flows(bench_capture, batch_bytes=8 << 10).to_dict()
    monkeypatch.setattr(naming_mod.EarlyNamer, "step", lambda self: None)
    assert guessed == read_flows(bench_capture, batch_bytes=8 << 10).to_dict()

    raw, jobs, early = seen["at_end"]
    assert len(early.guesses) > 10 and early.dns_guesses

    def names_and_dns(guesses, dns_guesses):
        early.guesses, early.dns_guesses = guesses, dns_guesses
        n, names = real_name_flows(raw, jobs, early)
        return names, n.dns_events, dict(n.stats)

    good, good_dns = dict(early.guesses), dict(early.dns_guesses)
    want = names_and_dns({}, {})
    assert names_and_dns(good, good_dns) == want
    f = next(iter(good))
    d = next(iter(good_dns))
    state, a_is_client, _, stats = good[f]
    poison = {"sni": "poison.example", "name": "poison.example"}
    poison_dns = ([], [], 0, 0)
    stale = (state[0] - 1,) + state[1:]
    assert names_and_dns({**good, f: (stale, a_is_client, poison, stats)}, {**good_dns, d: (stale, poison_dns)}) == want
    # the same guesses with a current state are taken (so the ones above were refused for their state)
    assert names_and_dns({**good, f: (state, a_is_client, poison, stats)}, good_dns) != want
    assert names_and_dns(good, {**good_dns, d: (good_dns[d][0], poison_dns)}) != want
    # a guess's own counts are added to the naming's (most guesses count nothing, and add nothing)
    from collections import Counter

    counted = {"invalid_names": 2, "malformed": Counter({"dns": 3})}
    got = names_and_dns({**good, f: (state, a_is_client, good[f][2], counted)}, good_dns)
    assert got[:2] == want[:2]
    assert got[2]["invalid_names"] == want[2]["invalid_names"] + 2
    assert got[2]["malformed"]["dns"] == want[2]["malformed"].get("dns", 0) + 3


def test_answered_dns_flows_named_ahead_change_nothing(bench_capture, monkeypatch):
    """EarlyNamer.step names ahead each DNS flow once it has payloads both ways (a query and its answer),
    whether or not the reader lets this process wait: the guesses hold at the end (the benchmark's DNS
    exchanges get no later packets) and the result is the one made at the end."""
    monkeypatch.setattr(settings, "_current", settings.Settings(no_fork=True))  # no waiting: no speculate
    seen = {}
    real_name_flows = naming_mod.name_flows

    def spy(raw, jobs, early=None):
        seen.setdefault("early", early)
        return real_name_flows(raw, jobs, early)

    monkeypatch.setattr(naming_mod, "name_flows", spy)
    ahead = read_flows(bench_capture, batch_bytes=8 << 10).to_dict()
    early = seen["early"]
    dns = [f for f in early.dns_guesses]
    assert len(dns) >= 10 and not early._queue  # made by step, not by speculate
    monkeypatch.setattr(naming_mod.EarlyNamer, "step", lambda self: None)
    assert ahead == read_flows(bench_capture, batch_bytes=8 << 10).to_dict()


def test_reader_calls_idle_while_it_waits(bench_capture, monkeypatch):
    """The two-process reader hands the time it waits for the child to ``idle`` (batches_with)."""
    from meshpcap.capture import open_capture
    from meshpcap.pipeline import _decode

    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    calls = []

    def idle():
        calls.append(1)
        return len(calls) < 10_000

    with open_capture(bench_capture, batch_bytes=64 << 10) as cap:
        n = sum(len(b) for b, _ in cap.batches_with(_decode, idle))
        assert n == cap.info.records > 0
    assert calls, "idle was never called"


def test_arrays_from_the_reader_process_have_numpy_s_own_dtypes(bench_capture, monkeypatch):
    """Arrays unpickled with their own dtype objects send numpy down slow generic paths
    (ufunc.at ran 30 times slower); the reader's pickler sends dtypes by name instead."""
    import dataclasses

    import numpy as np

    from meshpcap.capture import open_capture
    from meshpcap.pipeline import _decode

    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    forks = _count_forks(monkeypatch)
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
    assert seen > 1 and forks == [1], "the batches did not come from the reader's child"


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcapng")))
def test_parallel_equals_serial_on_pcapng_samples(sample, monkeypatch):
    serial, parallel = _both(SAMPLES / sample, monkeypatch, 4 << 10)
    assert parallel == serial


@pytest.fixture(scope="module")
def odd_pcapng(tmp_path_factory, bench_capture):
    """The generated capture as pcapng with blocks that change the walk's state between packets:
    a second section in the other byte order, interfaces described late, statistics, simple
    packet blocks, an unknown block and a damaged packet block; cut short at the end."""
    import struct

    from tests.capture import writers as w

    data = bench_capture.read_bytes()
    recs, pos = [], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, pos)
        recs.append((sec * 10**6 + frac, data[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    half = len(recs) // 2
    out = [w.shb(), w.idb(linktype=1, tsresol=6)]
    for i, (ts, pkt) in enumerate(recs[:half]):
        out.append(w.epb(iface=0, ts=ts, data=pkt))
        if i == 100:
            out += [w.idb(linktype=1, tsresol=9, name="late"), w.isb(iface=0, ifdrop=5), w.spb(data=pkt)]
        if i == 200:
            out.append(w.block("<", 0x0BADF00D, b"junk"))
        if i == 300:  # a packet block whose trailing length is wrong, read past (counted)
            bad = bytearray(w.epb(iface=0, ts=ts, data=pkt))
            bad[-4:] = b"\x01\x00\x00\x00"
            out.append(bytes(bad))
    out += [w.shb(">"), w.idb(">", linktype=1, tsresol=6)]
    out += [w.epb(">", iface=0, ts=ts, data=pkt) for ts, pkt in recs[half:]]
    path = tmp_path_factory.mktemp("odd") / "odd.pcapng"
    path.write_bytes(b"".join(out)[:-7])
    return path


@pytest.mark.parametrize("batch_bytes", [64 << 10, 1 << 20])
def test_parallel_equals_serial_on_odd_pcapng(odd_pcapng, monkeypatch, batch_bytes):
    serial, parallel = _both(odd_pcapng, monkeypatch, batch_bytes)
    assert serial["capture"]["sections"] == 2 and len(serial["capture"]["interfaces"]) == 3
    assert serial["capture"]["truncated"] is not None and serial["capture"]["unknown_blocks"] == 1
    assert serial["capture"]["damaged_blocks"] == 1
    assert parallel == serial


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("reported", [0, 1, 3])
def test_reader_child_dying_part_way(bench_capture, odd_pcapng, monkeypatch, fmt, reported):
    """The child reports ``reported`` batches and dies: the walk goes on here from there."""
    from meshpcap.capture.pcap import PcapWalker
    from meshpcap.capture.pcapng import PcapngWalker

    path, walker = (bench_capture, PcapWalker) if fmt == "pcap" else (odd_pcapng, PcapngWalker)
    serial = _serial(path, 64 << 10)
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    real = walker.child_items

    def dying(self, source):
        for n, item in enumerate(real(self, source)):
            if n == reported:
                raise SystemExit(1)  # the child ends without its last reports
            yield item

    monkeypatch.setattr(walker, "child_items", dying)
    # in this process: how many batches came from the child, and that the walk went on here
    received, resumed = [], []
    real_state, real_resume = walker.parent_state, walker.resume
    monkeypatch.setattr(walker, "parent_state", lambda self, st: (received.append(1), real_state(self, st))[1])
    monkeypatch.setattr(walker, "resume", lambda self, off, st: (resumed.append(off), real_resume(self, off, st))[1])
    forks = _count_forks(monkeypatch)
    assert read_flows(path, batch_bytes=64 << 10).to_dict() == serial
    assert forks and len(received) == reported and len(resumed) == 1


@pytest.mark.parametrize("failing", ["fork", "pipe"])
def test_no_child_to_spare_does_all_the_work_here(bench_capture, monkeypatch, failing):
    """When no child can be started (fork(2) fails with EAGAIN under a process limit, or no descriptor is
    left for the pipe), the reader, the naming and the media statistics do their work in this process:
    the same report, byte for byte, no traceback, and no descriptor left open."""
    import errno

    from meshpcap.flows import media as media_mod
    from meshpcap.pipeline import analyze

    if not _child.can_fork():
        pytest.skip("no second process here (MESHPCAP_NO_FORK, one CPU or no fork)")

    def report() -> str:
        out = []
        analyze(bench_capture).write_json(out.append)
        return "".join(out)

    here = report()
    from functools import partial

    from meshpcap import pipeline
    from meshpcap.capture import open_capture

    monkeypatch.setattr(pipeline, "open_capture", partial(open_capture, batch_bytes=64 << 10))  # a file of batches
    monkeypatch.setattr(parallel_mod, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(pipeline, "SPARE_MIN_BYTES", 0)
    monkeypatch.setattr(naming_mod, "PARALLEL_MIN_FLOWS", 1)
    monkeypatch.setattr(media_mod, "BESIDE_MIN_ROWS", 1)
    asked = []

    def refuse(*args):
        asked.append(failing)
        raise OSError(errno.EAGAIN if failing == "fork" else errno.EMFILE, "refused by the test")

    monkeypatch.setattr(os, failing, refuse)
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    assert report() == here
    # the reader, the media statistics' spare (forked as the read begins), the naming, and the media statistics
    # again at the end (no spare: a child forked then) each asked for a child
    assert len(asked) == 4
    if before is not None:
        assert len(os.listdir("/proc/self/fd")) == before
