"""The compiled 5-tuple grouping (meshpcap/flows/_group.c) against the numpy twin it accelerates.

Every input is grouped twice, by ``engine._groups_compiled`` and by ``engine._groups_numpy``; every
array must be identical, dtypes included.  The inputs are the samples' decoded batches and generated
columns: few or many 5-tuples, both directions, equal addresses, IPv6 halves, packets without ports,
packets left out (undecoded); and, with the hash multipliers set to zero so that every key has the
same hash, the collision report that sends a batch to numpy.  ``key_hash`` (the hash alone, for the
duplicate search's keys) against ``engine._key_hash_numpy``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.capture import open_capture
from meshpcap.decode import frames as F
from meshpcap.flows import engine as E
from tests.conftest import SAMPLES
from tests.flows.test_prepare import _comparable

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.flows import _group as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled grouping is not built (no C compiler?)")


def _both_equal(d, pidx) -> None:
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        fast = E._groups_compiled(d, pidx)
        E.GROUP = None  # the twin all in numpy (its hash too)
        slow = E._groups_numpy(d, pidx)
    finally:
        E.GROUP = saved
    assert fast is not None, "the compiled grouping declined a batch without collisions"
    assert len(fast) == len(slow)
    for i, (a, b) in enumerate(zip(fast, slow)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert np.array_equal(a, b), i


class _Cols:
    """The Decoded columns the grouping reads."""

    def __init__(self, proto, ver, shi, slo, dhi, dlo, sport, dport) -> None:
        self.proto, self.ip_version = np.asarray(proto, np.int16), np.asarray(ver, np.int8)
        self.src_hi, self.src_lo = np.asarray(shi, np.uint64), np.asarray(slo, np.uint64)
        self.dst_hi, self.dst_lo = np.asarray(dhi, np.uint64), np.asarray(dlo, np.uint64)
        self.sport, self.dport = np.asarray(sport, np.int32), np.asarray(dport, np.int32)


def _sample_batches(sample: str):
    """(batch, its Decoded) of a sample, read in 4 KiB batches (many of them, with packets cut at their ends)."""
    with open_capture(SAMPLES / sample, batch_bytes=4096) as cap:
        for batch in cap.batches():
            yield batch, F.decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_samples_group_alike(sample):
    for _, d in _sample_batches(sample):
        _both_equal(d, np.nonzero(d.reason == F.OK)[0])


@needs_ext
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 300), st.integers(1, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_generated_columns_group_alike(n, endpoints, seed, v6):
    rng = np.random.default_rng(seed)
    # few endpoints, so that packets share 5-tuples in both directions (and addresses repeat)
    hosts = rng.integers(0, 2**64 if v6 else 2**32, (endpoints, 2), dtype=np.uint64)
    if not v6:
        hosts[:, 0] = 0
    ports = rng.choice(np.array([-1, 0, 53, 443, 3478, 50000, 65535], np.int32), endpoints)
    src, dst = rng.integers(0, endpoints, n), rng.integers(0, endpoints, n)
    d = _Cols(rng.choice(np.array([6, 17, 1, 58], np.int16), n), np.full(n, 6 if v6 else 4, np.int8),
              hosts[src, 0], hosts[src, 1], hosts[dst, 0], hosts[dst, 1], ports[src], ports[dst])
    _both_equal(d, np.sort(rng.choice(n, rng.integers(0, n + 1), replace=False)).astype(np.int64) if n else
                np.zeros(0, np.int64))


@needs_ext
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(400, 6000), st.integers(0, 2**32 - 1))
def test_many_five_tuples_group_alike(n, seed):
    """A batch of many 5-tuples (a scan, thousands of clients): the compiled grouping's table, which starts
    small, grows as they come (every size it passes through) and still groups as numpy does."""
    rng = np.random.default_rng(seed)
    lo = rng.integers(0, 2**32, n, dtype=np.uint64)
    sport = rng.integers(1, 65536, n).astype(np.int32)
    repeat = rng.random(n) < 0.3  # some packets of an earlier 5-tuple again, either way round
    back = rng.integers(0, np.arange(1, n + 1))
    lo[repeat], sport[repeat] = lo[back[repeat]], sport[back[repeat]]
    d = _Cols(np.full(n, 17, np.int16), np.full(n, 4, np.int8), np.zeros(n, np.uint64), lo, np.zeros(n, np.uint64),
              np.full(n, 3232235777, np.uint64), sport, np.full(n, 3478, np.int32))
    turn = rng.random(n) < 0.5
    d.src_lo, d.dst_lo = np.where(turn, d.dst_lo, d.src_lo), np.where(turn, d.src_lo, d.dst_lo)
    d.sport, d.dport = np.where(turn, d.dport, d.sport), np.where(turn, d.sport, d.dport)
    _both_equal(d, np.arange(n, dtype=np.int64))


@needs_ext
def test_one_hash_for_two_keys_goes_to_numpy():
    """With every multiplier zero every key hashes to 0: different keys are a collision, reported so
    that _groups_compiled declines (and group_batch groups the batch in numpy); equal keys are not."""
    zero = (0,) * 6
    for keys, collided in ((([6, 6], [1, 2]), 1), (([6, 6], [1, 1]), 0)):
        (proto, lo) = keys
        d = _Cols(proto, [4, 4], [0, 0], lo, [0, 0], [9, 9], [1000, 1000], [443, 443])
        pidx = np.arange(2, dtype=np.int64)
        out = tuple(np.empty(2, dt) for dt in E._GROUP_OUTPUTS)
        groups, got = COMPILED.group_keys(pidx, d.proto, d.ip_version, d.src_hi, d.src_lo, d.dst_hi, d.dst_lo,
                                          d.sport, d.dport, zero, out)
        assert (groups, got) == (1, collided)


@needs_ext
def test_bad_columns_are_refused():
    d = _Cols([6], [4], [0], [1], [0], [2], [1], [2])
    out = tuple(np.empty(1, dt) for dt in E._GROUP_OUTPUTS)
    with pytest.raises(IndexError):
        COMPILED.group_keys(np.array([5], np.int64), d.proto, d.ip_version, d.src_hi, d.src_lo, d.dst_hi, d.dst_lo,
                            d.sport, d.dport, E._HASH_MULTIPLIERS, out)
    with pytest.raises(ValueError):
        COMPILED.group_keys(np.array([0], np.int64), d.proto, d.ip_version, d.src_hi, d.src_lo, d.dst_hi, d.dst_lo,
                            d.sport, d.dport, E._HASH_MULTIPLIERS, out[:-1])
    # columns of other types are left to numpy
    d.sport = d.sport.astype(np.int64)
    assert E._groups_compiled(d, np.array([0], np.int64)) is None


@needs_ext
@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.integers(0, 200), st.integers(0, 2**32 - 1))
def test_key_hash_alike(ncols, n, seed):
    rng = np.random.default_rng(seed)
    cols = tuple(rng.integers(0, 2**64, n, dtype=np.uint64) for _ in range(ncols))
    out = np.empty(n, np.uint64)
    COMPILED.key_hash(cols, E._HASH_MULTIPLIERS, out)
    assert np.array_equal(out, E._key_hash_numpy(cols))
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        assert np.array_equal(E._key_hash(cols), out)
    finally:
        E.GROUP = saved


def _evidence_columns(rng, n, data_len):
    """The columns FlowBuilder._evidence gives evidence_items, some payloads running past the data's end."""
    pay = rng.integers(0, data_len + 40, n).astype(np.int64)
    cap = rng.integers(0, 1600, n).astype(np.int64)
    return (pay, cap, rng.integers(0, 2**62, n).astype(np.int64), rng.integers(-2**62, 2**62, n).astype(np.int64),
            rng.integers(0, 2, n).astype(bool), rng.integers(0, 2**32, n).astype(np.int64),
            rng.integers(0, 512, n).astype(np.int16), rng.integers(0, 65536, n).astype(np.int64))


@needs_ext
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 5000), st.integers(0, 2**32 - 1), st.sampled_from(["bytes", "mmap"]))
def test_evidence_items_alike(n, data_len, seed, kind):
    """The compiled Evidence rows equal the twin's, field by field and type by type (bool, int, bytes), the
    payloads sliced as Python slices them (clamped at the data's end), from bytes or a read-only map."""
    import mmap

    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, data_len).astype(np.uint8).tobytes()
    data = raw
    if kind == "mmap":
        if not data_len:
            return
        data = mmap.mmap(-1, data_len)
        data.write(raw)
    cols = _evidence_columns(rng, n, data_len)
    fast = COMPILED.evidence_items(E.Evidence, data, *cols)
    slow = E._evidence_items_py(E.Evidence, data, *cols)
    assert fast == slow
    for a, b in zip(fast, slow):
        assert type(a) is E.Evidence and [type(x) for x in a] == [type(x) for x in b]
    if kind == "mmap":
        data.close()


@needs_ext
def test_evidence_items_refuses_what_the_twin_would_not_take():
    rng = np.random.default_rng(1)
    cols = list(_evidence_columns(rng, 3, 100))
    with pytest.raises(TypeError):
        COMPILED.evidence_items(int, b"x" * 100, *cols)
    for k, wrong in [(0, cols[0].astype(np.int32)), (4, cols[4].astype(np.int64)), (6, cols[6].astype(np.int64)),
                     (2, cols[2][:2])]:
        bad = list(cols)
        bad[k] = wrong
        with pytest.raises(ValueError):
            COMPILED.evidence_items(E.Evidence, b"x" * 100, *bad)
    bad = list(cols)
    bad[1] = np.array([1, -1, 2], np.int64)  # a negative length: never made by the decoder, refused
    with pytest.raises(ValueError):
        COMPILED.evidence_items(E.Evidence, b"x" * 100, *bad)
    assert COMPILED.evidence_items(E.Evidence, b"", *(c[:0] for c in cols)) == []


def _flow_payloads(data: st.DataObject) -> tuple[list, bool, int | None, int | None, int]:
    """A TCP flow's payloads as the builder keeps them: both directions interleaved, each in order from its
    ISN (cut anywhere, some empty), or disturbed (a segment moved, repeated, shifted, a SYN with data, a
    sequence number near 2**32); with or without the SYNs' ISNs, and a limit."""
    flows = []
    isns = []
    for side in (True, False):
        isn = data.draw(st.integers(0, 2**32 - 1))
        body = data.draw(st.binary(max_size=300))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
        bounds = [0, *cuts, len(body)]
        segs = [[(isn + 1 + a) % 2**32, 0x18, body[a:b]] for a, b in zip(bounds, bounds[1:])]
        trouble = data.draw(st.sampled_from(["none", "none", "move", "repeat", "shift", "syn", "huge"]))
        if segs and trouble == "move":
            segs.insert(data.draw(st.integers(0, len(segs) - 1)), segs.pop())
        elif segs and trouble == "repeat":
            segs.append(list(segs[data.draw(st.integers(0, len(segs) - 1))]))
        elif segs and trouble == "shift":
            segs[-1][0] = (segs[-1][0] + data.draw(st.integers(1, 9))) % 2**32
        elif segs and trouble == "syn":
            segs[0][1] |= E.TCP_SYN
        elif segs and trouble == "huge":
            segs[0][0] = 2**64 + 1  # no header holds this, but a twin's input may: reassemble compares ints
        flows.append([(side, s) for s in segs])
        isns.append(isn if data.draw(st.booleans()) else None)
    merged = []
    while flows[0] or flows[1]:  # the two directions interleaved, each in its order
        k = data.draw(st.integers(0, 1)) if flows[0] and flows[1] else (0 if flows[0] else 1)
        merged.append(flows[k].pop(0))
    evs = [E.Evidence(i, i, side, seq, flags, body, len(body)) for i, (side, (seq, flags, body)) in enumerate(merged)]
    return evs, data.draw(st.booleans()), isns[0], isns[1], data.draw(st.sampled_from([0, 7, 100, 1 << 16]))


@needs_ext
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_tcp_streams_as_reassemble_gives_them(data):
    """naming.tcp_streams with the compiled helper returns what reassemble gives of each direction (the
    client's: the payloads whose from_a is a_is_client), whatever the order; the helper itself joins every
    direction that is in order (so the fast path is what these cases test) and declines the others."""
    from meshpcap.flows import naming as N

    evs, a_is_client, a_isn, b_isn, limit = _flow_payloads(data)
    c_isn, s_isn = (a_isn, b_isn) if a_is_client else (b_isn, a_isn)
    want = (N.reassemble([e for e in evs if e.from_a == a_is_client], c_isn, limit)[0],
            N.reassemble([e for e in evs if e.from_a != a_is_client], s_isn, limit)[0])
    saved = N.GROUP
    try:
        N.GROUP = COMPILED
        assert N.tcp_streams(evs, a_is_client, c_isn, s_isn, limit) == want
    finally:
        N.GROUP = saved
    fast = COMPILED.tcp_streams(E.Evidence, evs, a_is_client, -1 if c_isn is None else (c_isn + 1) % 2**32,
                                -1 if s_isn is None else (s_isn + 1) % 2**32, limit)
    for side, got, isn, expected in ((a_is_client, fast[0], c_isn, want[0]), (not a_is_client, fast[1], s_isn, want[1])):
        segs = [e for e in evs if e.from_a == side and e.data]
        pos = (isn + 1) % 2**32 if isn is not None else (segs[0].seq if segs else 0)
        in_order = True
        for e in segs:
            if e.seq != pos or e.flags & E.TCP_SYN or e.seq >= 2**63:  # a number beyond 64 bits: declined
                in_order = False
                break
            pos = (pos + len(e.data)) % 2**32
        assert (got is not None) == in_order
        if got is not None:
            assert type(got) is bytes and got == expected


@needs_ext
def test_tcp_streams_declines_what_it_does_not_know():
    """Items of another type, a from_a that is not a bool, data that is not bytes: both directions are left to
    reassemble, which knows them (a plain tuple has no fields to read; 1 == True for reassemble)."""
    ok = E.Evidence(0, 0, True, 5, 0x18, b"abc", 3)
    for evs in ([ok, (0, 0, True, 8, 0x18, b"def", 3)], [ok, ok._replace(from_a=1)], [ok._replace(data=bytearray(b"abc"))],
                [ok._replace(seq=5.0)], [ok._replace(flags=True)]):
        assert COMPILED.tcp_streams(E.Evidence, evs, True, -1, -1, 100) == (None, None)
    assert COMPILED.tcp_streams(E.Evidence, [ok, ok._replace(from_a=False)], True, 5, -1, 2) == (b"ab", b"ab")
    assert COMPILED.tcp_streams(E.Evidence, [], False, -1, -1, 100) == (b"", b"")
    with pytest.raises(ValueError):
        COMPILED.tcp_streams(E.Evidence, [ok], True, -1, -1, -1)
    with pytest.raises(TypeError):
        COMPILED.tcp_streams(E.Evidence, (ok,), True, -1, -1, 1)


def _candidates_both(batch, d, gb, idle_ns) -> None:
    """engine.evidence_candidates by the compiled helper and by its numpy twin: the same positions, int32."""
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        E.evidence_candidates(batch, d, gb, idle_ns)
        fast = gb.ev_cand
        E._evidence_candidates_numpy(batch, d, gb, idle_ns)
        slow = gb.ev_cand
    finally:
        E.GROUP = saved
    assert fast.dtype == slow.dtype == np.int32
    assert np.array_equal(fast, slow)


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_samples_evidence_candidates_alike(sample):
    for batch, d in _sample_batches(sample):
        gb = E.group_batch(batch.data, d)
        for idle_ns in (E.UDP_IDLE_NS, 1_000_000, 0):
            _candidates_both(batch, d, gb, idle_ns)


class _Ns:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


@needs_ext
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 400), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_generated_evidence_candidates_alike(n, endpoints, seed):
    """Few 5-tuples both ways (DNS ports among them), SYNs with and without ACK, payloads and empty
    packets, gaps longer and shorter than the idle split, STUN messages anywhere, and packets of the batch
    left out of pidx: the compiled choice is the twin's."""
    rng = np.random.default_rng(seed)
    m = n + int(rng.integers(0, 5))  # the batch's packets; pidx takes n of them
    hosts = rng.integers(0, 2**32, (endpoints, 2), dtype=np.uint64)
    hosts[:, 0] = 0
    ports = rng.choice(np.array([53, 5353, 443, 3478, 50000], np.int32), endpoints)
    src, dst = rng.integers(0, endpoints, m), rng.integers(0, endpoints, m)
    d = _Cols(rng.choice(np.array([6, 17, 1], np.int16), m), np.full(m, 4, np.int8), hosts[src, 0], hosts[src, 1],
              hosts[dst, 0], hosts[dst, 1], ports[src], ports[dst])
    d.payload_cap = np.where(rng.random(m) < 0.7, rng.integers(1, 1500, m), 0).astype(np.int64)
    d.tcp_flags = rng.choice(np.array([0x02, 0x12, 0x10, 0x18, 0x11, 0x04], np.int16), m)
    ts = np.cumsum(rng.choice(np.array([0, 1, 1000, 10**6, 10**9], np.int64), m))
    pidx = np.sort(rng.choice(m, n, replace=False)).astype(np.int64)
    proto, ver, ah, al, bh, bl, ap, bp, src_a, h, perm, first_pos, inv = E._groups_numpy(d, pidx)
    stun_at = np.sort(rng.choice(n, int(rng.integers(0, n + 1)), replace=False)).astype(np.int64) if n else \
        np.zeros(0, np.int64)
    keys = (proto[first_pos], ver[first_pos], ah[first_pos], al[first_pos], bh[first_pos], bl[first_pos],
            ap[first_pos], bp[first_pos])
    gb = _Ns(pidx=pidx, perm=perm, proto=proto, inv=inv, src_a=src_a, keys=keys, stun_at=stun_at)
    for idle_ns in (10**6, 10**9 - 1, E.UDP_IDLE_NS):
        _candidates_both(_Ns(ts_ns=ts), d, gb, idle_ns)


@needs_ext
def test_evidence_candidates_refuses_bad_columns():
    cols = [np.zeros(2, np.int64), np.array([0, 1], np.int64), np.full(2, 17, np.int64), np.zeros(2, np.int64),
            np.ones(2, bool), np.full(1, 53, np.int64), np.full(1, 40000, np.int64), np.zeros(0, np.int64),
            np.ones(2, np.int64), np.zeros(2, np.int16), np.zeros(2, np.int64)]
    out = np.empty(2, np.int32)
    assert COMPILED.evidence_candidates(*cols, out, 10, (16, 8, 10_000), (53,)) == 2
    for k, wrong in [(1, np.array([0, 2], np.int64)), (3, np.array([0, 1], np.int64)), (7, np.array([5], np.int64))]:
        bad = list(cols)
        bad[k] = wrong
        with pytest.raises(IndexError):
            COMPILED.evidence_candidates(*bad, out, 10, (16, 8, 10_000), (53,))
    for k, wrong in [(0, cols[0].astype(np.int32)), (9, cols[9].astype(np.int64)), (2, cols[2][:1])]:
        bad = list(cols)
        bad[k] = wrong
        with pytest.raises(ValueError):
            COMPILED.evidence_candidates(*bad, out, 10, (16, 8, 10_000), (53,))
    with pytest.raises(ValueError):
        COMPILED.evidence_candidates(*cols, out, 10, (16, 8), (53,))


def _built(path, compiled: bool, batch_bytes: int, prepared: bool):
    """The finished flows of ``path`` and the DNS datagrams handed on per batch, the evidence kept by
    keep_evidence (``compiled``) or by its numpy twin."""
    from meshpcap.capture import open_capture as _open

    fb = E.FlowBuilder()
    if not compiled:
        fb._evidence = fb._evidence_numpy
    dns = []
    with _open(path, batch_bytes=batch_bytes) as cap:
        for batch in cap.batches():
            d = F.decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
            fb.add(batch, d, E.prepare(batch, d, trim=True) if prepared else None)
            dns.append([tuple(e) for e in fb.dns_new])
            fb.dns_new.clear()
            counters = [c.a[:fb.nflows].tolist() for c in (fb.f_pay_a, fb.f_pay_b, fb.f_stun_a, fb.f_stun_b)]
    raw = fb.finish()
    for lst in raw.evidence.values():
        for e in lst:
            assert type(e) is E.Evidence and [type(x) for x in e] == [int, int, bool, int, int, bytes, int]
    return _comparable(raw), dns, counters


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
@pytest.mark.parametrize("batch_bytes,prepared", [(2048, True), (1 << 20, True), (4096, False)])
def test_samples_keep_the_same_evidence(sample, batch_bytes, prepared):
    assert E.GROUP is not None
    assert _built(SAMPLES / sample, True, batch_bytes, prepared) == _built(SAMPLES / sample, False, batch_bytes, prepared)


@needs_ext
@pytest.mark.parametrize("batch_bytes", [700, 5000, 1 << 20])
def test_bounds_are_kept_alike(tmp_path, batch_bytes):
    """A capture whose flows reach every bound (TCP, UDP, STUN, DNS): the same evidence, counters and DNS
    datagrams from the compiled helper as from its twin."""
    from tests.flows.test_prepare import _busy_capture

    path = _busy_capture(tmp_path)
    fast = _built(path, True, batch_bytes, True)
    assert fast == _built(path, False, batch_bytes, True)
    assert {32, 49} <= {len(v) for v in fast[0]["evidence"].values()}


@needs_ext
def test_keep_evidence_refuses_bad_columns():
    n = 2
    cols = [np.array([0, 1], np.int32), np.zeros(n, np.int64), np.ones(n, bool), np.ones(n, bool), np.zeros(n, bool),
            np.zeros(n, np.int64), np.array([0, 1], np.int64), np.zeros(n, np.int32), np.zeros(n, np.int32),
            np.zeros(n, np.int64), np.ones(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int16),
            np.ones(n, np.int64)]
    counters = [np.zeros(4, np.int64) for _ in range(4)]
    args = (16, 8, 10_000, 64), (53,)
    ev: dict = {}
    assert COMPILED.keep_evidence(E.Evidence, b"ab", ev, *cols, *counters, 1, 10, *args) == []
    assert ev == {0: [E.Evidence(10, 0, True, 0, 0, b"a", 1), E.Evidence(11, 0, True, 0, 0, b"a", 1)]}
    assert counters[0].tolist() == [2, 0, 0, 0]
    for k, wrong, error in [(0, np.array([0, 5], np.int32), IndexError), (1, np.array([0, 3], np.int64), IndexError),
                            (6, np.array([0, 9], np.int64), IndexError), (0, cols[0].astype(np.int64), ValueError),
                            (12, cols[12].astype(np.int64), ValueError), (2, cols[2][:1], ValueError)]:
        bad = list(cols)
        bad[k] = wrong
        before = [c.copy() for c in counters]
        with pytest.raises(error):
            COMPILED.keep_evidence(E.Evidence, b"ab", {}, *bad, *counters, 1, 10, *args)
        assert all(np.array_equal(a, b) for a, b in zip(before, counters)), "counted before refusing"
    with pytest.raises(TypeError):
        COMPILED.keep_evidence(int, b"ab", {}, *cols, *counters, 1, 10, *args)
    with pytest.raises(TypeError):
        COMPILED.keep_evidence(E.Evidence, b"ab", {0: ()}, *cols, *counters, 1, 10, *args)


@needs_ext
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 200), st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_generated_evidence_kept_alike(n, nf, seed, given_candidates):
    """keep_evidence against FlowBuilder._evidence_numpy on generated columns: packets of the batch left out of
    the decoded ones (so positions and packets differ), flows part-way to their bounds, STUN marks on TCP too,
    DNS ports, payloads that run past the data; the same lists (in the same order), DNS datagrams and counters.
    Each flow has one transport and one pair of ports, as a 5-tuple's flow has."""
    rng = np.random.default_rng(seed)
    m = n + int(rng.integers(0, 6))
    data = rng.integers(0, 256, 3000).astype(np.uint8).tobytes()
    pidx = np.sort(rng.choice(m, n, replace=False)).astype(np.int64)
    fid = rng.integers(0, nf, n).astype(np.int64)
    flow_tcp = rng.random(nf) < 0.5
    sport, dport = rng.integers(0, 65536, m).astype(np.int32), rng.integers(0, 65536, m).astype(np.int32)
    sport[pidx] = rng.choice(np.array([53, 5353, 443, 3478], np.int32), nf)[fid]
    dport[pidx] = rng.choice(np.array([5355, 40000, 443], np.int32), nf)[fid]
    d = _Ns(sport=sport, dport=dport,
            payload=rng.integers(0, 3100, m).astype(np.int64),
            payload_cap=np.where(rng.random(m) < 0.8, rng.integers(1, 400, m), 0).astype(np.int64),
            tcp_seq=rng.integers(0, 2**32, m).astype(np.int64), tcp_flags=rng.integers(0, 64, m).astype(np.int16),
            payload_len=rng.integers(0, 1500, m).astype(np.int64))
    src_a, is_tcp, stun = rng.random(n) < 0.5, flow_tcp[fid], rng.random(n) < 0.3
    ts = rng.integers(0, 2**62, n).astype(np.int64)
    start = [rng.integers(0, 20, nf), rng.integers(0, 20, nf), rng.integers(0, 70, nf), rng.integers(0, 70, nf)]
    cand = None
    if given_candidates:
        cand = np.flatnonzero((d.payload_cap[pidx] > 0) & (rng.random(n) < 0.9)).astype(np.int32)
    got = []
    for compiled in (True, False):
        fb = E.FlowBuilder()
        for c, v in zip((fb.f_pay_a, fb.f_pay_b, fb.f_stun_a, fb.f_stun_b), start):
            c.ensure(nf)
            c.a[:nf] = v
        fb.evidence[0].append(E.Evidence(0, 0, True, 0, 0, b"earlier", 7))  # an earlier batch's, kept first
        how = fb._evidence if compiled else fb._evidence_numpy
        how(data, d, pidx, fid, src_a, is_tcp, ~is_tcp, stun, 1000, ts, nf, cand)
        got.append(([(k, [tuple(e) for e in v]) for k, v in fb.evidence.items()], [tuple(e) for e in fb.dns_new],
                    [c.a[:nf].tolist() for c in (fb.f_pay_a, fb.f_pay_b, fb.f_stun_a, fb.f_stun_b)]))
    assert got[0] == got[1]


def _stun_both(data, pay, cap, plen):
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        fast = E._stun_datagrams(data, pay, cap, plen)
    finally:
        E.GROUP = saved
    slow = E._stun_datagrams_numpy(F._Gather(data), pay, cap, plen)
    assert len(fast) == len(slow) == 3
    for a, b in zip(fast, slow):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    return fast


@needs_ext
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 60), st.integers(0, 2**32 - 1))
def test_generated_stun_datagrams_alike(n, seed):
    """Payloads that are RFC 8489 STUN (cookie, lengths that are multiples of 4 or not), MS-TURN (its first
    attribute, lengths that fill the datagram or not, Send and Data Indication types), ChannelData (channels
    0x4000-0x4FFF, padding 0-4), and noise: the compiled classification is the twin's."""
    rng = np.random.default_rng(seed)
    parts, pay, cap, plen = [], [], [], []
    at = 0
    for _ in range(n):
        kind = rng.integers(0, 4)
        body = bytearray(rng.integers(0, 256, int(rng.integers(4, 80))).astype(np.uint8).tobytes())
        if kind == 0 and len(body) >= 20:  # RFC 8489
            body[0] = int(rng.integers(0, 5))
            body[2:4] = int(rng.choice([len(body) - 20, len(body) - 19, 0, 4])).to_bytes(2, "big") if len(body) >= 20 else b"\x00\x00"
            body[4:8] = (0x2112A442).to_bytes(4, "big")
        elif kind == 1 and len(body) >= 28:  # MS-TURN
            body[0:2] = int(rng.choice([0x0004, 0x0115, 0x0101, 0x0003])).to_bytes(2, "big")
            body[2:4] = int(rng.choice([len(body) - 20, len(body) - 21])).to_bytes(2, "big")
            body[20:28] = bytes.fromhex("000f000472c64bc6")
        elif kind == 2:  # ChannelData
            body[0] = int(rng.integers(0x3F, 0x51))
            body[2:4] = max(len(body) - 4 - int(rng.integers(0, 5)), 0).to_bytes(2, "big")
        parts.append(bytes(body))
        pay.append(at)
        cap.append(len(body) if rng.random() < 0.9 else max(4, len(body) - int(rng.integers(0, 8))))  # some cut
        plen.append(len(body))
        at += len(body)
    data = b"".join(parts)
    cols = [np.array(x, np.int64) for x in (pay, cap, plen)]
    _stun_both(data, *cols)


@needs_ext
def test_stun_datagrams_leaves_odd_payloads_to_numpy():
    """A payload shorter than 4 bytes or outside the data: the helper declines and the twin answers."""
    data = bytes(range(40))
    one = lambda *v: np.array(v, np.int64)  # noqa: E731
    out = [np.empty(1, bool), np.empty(1, np.int8), np.empty(1, bool)]
    for pay, cap in ((0, 3), (38, 4), (-1, 4)):
        assert COMPILED.stun_datagrams(data, one(pay), one(cap), one(cap), E.STUN_COOKIE, E.MS_TURN_FIRST_ATTRIBUTE,
                                       E.MS_TURN_INDICATIONS, *out) is False
    _stun_both(data, one(38, 0), one(4, 3), one(4, 3))  # through the twin: clipped reads
    with pytest.raises(ValueError):
        COMPILED.stun_datagrams(data, one(0), one(4, 4), one(4), E.STUN_COOKIE, E.MS_TURN_FIRST_ATTRIBUTE,
                                E.MS_TURN_INDICATIONS, *out)


def _dup_keys_both(batch, d, gb):
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        fast = E._dup_keys(batch, d, gb)
    finally:
        E.GROUP = saved
    slow = E._dup_keys_numpy(batch, d, gb)
    assert fast.dtype == slow.dtype == np.uint64 and np.array_equal(fast, slow)


@needs_ext
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_samples_stun_and_dup_keys_alike(sample):
    for batch, d in _sample_batches(sample):
        gb = E.group_batch(batch.data, d)
        _dup_keys_both(batch, d, gb)
        pidx = gb.pidx
        pcap_ = d.payload_cap[pidx]
        ui = np.nonzero((gb.proto == F.PROTO_UDP) & (pcap_ >= 4))[0]
        _stun_both(batch.data, d.payload[pidx[ui]], pcap_[ui], d.payload_len[pidx[ui]])


@needs_ext
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 200), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_generated_dup_keys_alike(n, groups, seed):
    """Any values in every column (negative TCP flags and sequence numbers too: they cast as numpy casts)."""
    rng = np.random.default_rng(seed)
    m = n + int(rng.integers(0, 5))
    d = _Ns(ip_len=rng.integers(-2**40, 2**40, m).astype(np.int64), tcp_seq=rng.integers(-2**33, 2**33, m).astype(np.int64),
            tcp_flags=rng.integers(-2**15, 2**15, m).astype(np.int16), payload_len=rng.integers(0, 2**20, m).astype(np.int64),
            ttl=rng.integers(0, 256, m).astype(np.uint8))
    gb = _Ns(pidx=np.sort(rng.choice(m, n, replace=False)).astype(np.int64), inv=rng.integers(0, groups, n).astype(np.int64),
             key_hash=rng.integers(0, 2**64, groups, dtype=np.uint64), src_a=rng.random(n) < 0.5)
    _dup_keys_both(_Ns(caplen=rng.integers(0, 70000, m).astype(np.int64)), d, gb)
    if n:  # a 5-tuple out of range is refused
        with pytest.raises(IndexError):
            COMPILED.dup_keys(gb.pidx, np.full(n, groups, np.int64), gb.key_hash, gb.src_a, d.ip_len, d.tcp_seq,
                              d.tcp_flags, d.payload_len, d.ttl, np.zeros(m, np.int64), E._HASH_MULTIPLIERS,
                              np.empty(n, np.uint64))


@needs_ext
def test_a_cut_ms_turn_message_is_no_stun():
    """An MS-TURN Data Indication captured to 27 of its 28 bytes (the MAGIC-COOKIE attribute's last byte, and
    what follows it in the batch, past the capture): not STUN for either."""
    msg = (0x0115).to_bytes(2, "big") + (8).to_bytes(2, "big") + bytes(16) + bytes.fromhex("000f000472c64bc6")
    data = msg + b"\x00" * 8
    ustun, _, _ = _stun_both(data, np.array([0], np.int64), np.array([27], np.int64), np.array([28], np.int64))
    assert not ustun[0]
    ustun, cls, _ = _stun_both(data, np.array([0], np.int64), np.array([28], np.int64), np.array([28], np.int64))
    assert ustun[0] and cls.tolist() == [1]


def _builder_steps_input(rng, n: int, slots: int):
    """A batch's packets in 5-tuple order as FlowBuilder.add has them after its events: each packet's slot,
    time and protocol, the flow its 5-tuple had before the batch (per slot: none, or one), the flows the events
    started, and a builder whose per-slot columns hold the 5-tuples' earlier flows and times."""
    slot = rng.integers(0, slots, n).astype(np.int64)
    perm = np.argsort(slot, kind="stable").astype(np.int64)
    ts = np.cumsum(rng.choice(np.array([0, 1, 10**6, 10**9, 10**11], np.int64), n)) + int(rng.integers(0, 10**12))
    if n and rng.random() < 0.2:  # time going back now and then (captures merged badly)
        ts = ts[rng.permutation(n)]
    b = E.FlowBuilder(idle_ns=int(rng.choice([10**6, 10**9, E.UDP_IDLE_NS])))
    b.slot_cur.ensure(slots + int(rng.integers(0, 3)), -1)
    b.slot_last.ensure(slots + int(rng.integers(0, 3)), 0)
    had = rng.random(slots) < 0.6
    b.slot_cur.a[:slots] = np.where(had, rng.integers(0, 50, slots), -1)
    b.slot_last.a[:slots] = np.where(had, rng.integers(0, 10**12, slots), 0)
    flow_before = b.slot_cur.a[slot].copy()
    started = np.where(rng.random(n) < 0.2, rng.integers(50, 100, n), -1).astype(np.int64)
    first = np.ones(n, bool)
    first[1:] = slot[perm][1:] != slot[perm][:-1]
    must = perm[first & (flow_before[perm] < 0)]  # a 5-tuple without a flow: its first packet starts one
    started[must] = rng.integers(50, 100, must.size)
    proto = rng.choice(np.array([F.PROTO_TCP, F.PROTO_UDP, F.PROTO_ICMP], np.int64), slots)[slot]
    gb = _Ns(perm=perm, proto=proto, pidx=np.arange(n, dtype=np.int64))
    return b, gb, slot, ts, flow_before, started


@needs_ext
@settings(max_examples=120, deadline=None)
@given(st.integers(0, 300), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_idle_positions_and_flows_alike(n, slots, seed):
    """The packets that start a flow after silence, each packet's flow and each 5-tuple's last flow and time:
    the compiled steps (``_group.c`` idle_positions, fill_flows) against their numpy twins."""
    rng = np.random.default_rng(seed)
    b, gb, slot, ts, flow_before, started = _builder_steps_input(rng, n, slots)
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        fast_idle = b._idle_positions(gb, slot, ts, flow_before, started)
        E.GROUP = None
        slow_idle = b._idle_positions(gb, slot, ts, flow_before, started)
        assert fast_idle.dtype == slow_idle.dtype == np.int64 and fast_idle.tolist() == slow_idle.tolist()
        twin = E.FlowBuilder(idle_ns=b.idle_ns)
        twin.slot_cur.a, twin.slot_last.a = b.slot_cur.a.copy(), b.slot_last.a.copy()
        E.GROUP = COMPILED
        fast = b._flow_of_each_packet(gb, slot, ts, flow_before, started.copy())
        E.GROUP = None
        slow = twin._flow_of_each_packet(gb, slot, ts, flow_before, started.copy())
    finally:
        E.GROUP = saved
    assert fast.dtype == slow.dtype and np.array_equal(fast, slow)
    assert np.array_equal(b.slot_cur.a, twin.slot_cur.a) and np.array_equal(b.slot_last.a, twin.slot_last.a)


@needs_ext
@settings(max_examples=80, deadline=None)
@given(st.integers(0, 300), st.integers(1, 40), st.integers(0, 2**32 - 1))
def test_count_flows_alike(n, nf, seed):
    """Packets, bytes, first and last times and first records per flow direction, added to counters that hold
    earlier batches already: the compiled count (``_group.c`` count_flows) against its numpy twin."""
    rng = np.random.default_rng(seed)
    m = n + int(rng.integers(0, 5))
    pidx = np.sort(rng.choice(m, n, replace=False)).astype(np.int64)
    flow = rng.integers(0, nf, n).astype(np.int64)
    src_a = rng.random(n) < 0.5
    scale = int(rng.choice([4, 2**40]))  # small: times and records that tie, or differ by one, with the counters'
    ts = rng.integers(-scale, scale, n).astype(np.int64)
    d = _Ns(ip_len=rng.integers(0, 65536, m).astype(np.int64))
    rec0 = int(rng.integers(0, scale))
    builders = []
    for _ in range(2):
        b = E.FlowBuilder()
        for g in (b.f_pk_a, b.f_pk_b, b.f_by_a, b.f_by_b, b.f_first, b.f_last, b.f_first_rec):
            g.ensure(nf + int(rng.integers(0, 2)))
        builders.append(b)
    before = [rng.integers(0, 10**6, nf) for _ in range(4)] + [rng.integers(-scale, scale + m, nf) for _ in range(3)]
    for b in builders:
        for g, v in zip((b.f_pk_a, b.f_pk_b, b.f_by_a, b.f_by_b, b.f_first, b.f_last, b.f_first_rec), before):
            g.a[:nf] = v
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        builders[0]._count_packets(d, pidx, src_a, flow, ts, rec0, nf)
        E.GROUP = None
        builders[1]._count_packets(d, pidx, src_a, flow, ts, rec0, nf)
    finally:
        E.GROUP = saved
    fast, slow = builders
    for name in ("f_pk_a", "f_pk_b", "f_by_a", "f_by_b", "f_first", "f_last", "f_first_rec"):
        assert np.array_equal(getattr(fast, name).a, getattr(slow, name).a), name


@needs_ext
@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64), st.lists(st.tuples(*[st.integers(0, 80)] * 4), max_size=30))
def test_same_bytes_as_slices_compare(a, b, pairs):
    """Pairs of byte ranges compared as Python compares their slices (ranges cut at the end of their buffer
    too): the compiled comparison (``_group.c`` same_bytes) against its twin, on bytes and on a mmap-like buffer."""
    cols = [np.array([p[k] for p in pairs], np.int64) for k in range(4)]
    want = np.array([a[p:p + k] == b[q:q + j] for p, k, q, j in pairs], bool)
    fast = np.zeros(len(pairs), bool)
    COMPILED.same_bytes(a, cols[0], cols[1], memoryview(b), cols[2], cols[3], fast)
    slow = E._same_bytes_py(a, cols[0], cols[1], b, cols[2], cols[3], np.zeros(len(pairs), bool))
    assert fast.tolist() == slow.tolist() == want.tolist()


@needs_ext
def test_builder_steps_refuse_bad_columns():
    """A slot or flow out of range, a position out of the batch, or a column of the wrong size is refused before
    anything is written."""
    z = np.zeros(2, np.int64)
    with pytest.raises(IndexError):
        COMPILED.idle_positions(z, np.array([0, 5], np.int64), z, z, z, z, np.zeros(3, np.int64), 10, 6, np.empty(2, np.int64))
    with pytest.raises(IndexError):
        COMPILED.fill_flows(np.array([0, 2], np.int64), z, z, z, z, np.zeros(3, np.int64), np.zeros(3, np.int64),
                            np.empty(2, np.int64))
    slot_cur = np.full(3, 7, np.int64)
    with pytest.raises(IndexError):
        COMPILED.fill_flows(z, np.array([0, 3], np.int64), z, z, z, slot_cur, np.zeros(3, np.int64), np.empty(2, np.int64))
    assert slot_cur.tolist() == [7, 7, 7]
    with pytest.raises(ValueError):
        COMPILED.fill_flows(z, z, z, z, np.zeros(2, np.int32), slot_cur, np.zeros(3, np.int64), np.empty(2, np.int64))
    counters = [np.zeros(2, np.int64) for _ in range(7)]
    with pytest.raises(IndexError):
        COMPILED.count_flows(np.array([0, 2], np.int64), np.ones(2, bool), z, np.ones(2, np.int64), z, 0, 2, *counters)
    assert all(c.tolist() == [0, 0] for c in counters)
    with pytest.raises(ValueError):
        COMPILED.count_flows(z, np.ones(2, bool), z, np.ones(2, np.int64), z, 0, 3, *counters)
    with pytest.raises(IndexError):
        COMPILED.same_bytes(b"ab", np.array([-1], np.int64), np.ones(1, np.int64), b"ab", np.zeros(1, np.int64),
                            np.ones(1, np.int64), np.zeros(1, bool))


@needs_ext
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 400), st.sampled_from([1, 3, 50, 2**32 - 1]), st.integers(0, 40), st.integers(0, 2**32 - 1))
def test_dup_links_and_first_of_keys_alike(n, top, k, seed):
    """The duplicate search's pairs by key: each packet's latest earlier packet of its key, and the first packet
    of each of some keys (present or not, each once, or given twice): the compiled hash tables against their
    sorting twins, with keys that repeat a lot (few values) or hardly (many)."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, top, n, dtype=np.uint64, endpoint=True).astype(np.uint32)
    wanted = rng.integers(0, top, k, dtype=np.uint64, endpoint=True).astype(np.uint32)
    saved = E.GROUP
    try:
        E.GROUP = COMPILED
        fast_prev, fast_first = E._dup_links(keys), E._first_of_keys(keys, wanted)
        E.GROUP = None
        slow_prev, slow_first = E._dup_links(keys), E._first_of_keys(keys, wanted)
    finally:
        E.GROUP = saved
    assert fast_prev.dtype == slow_prev.dtype == np.int32 and fast_prev.tolist() == slow_prev.tolist()
    assert fast_first.dtype == slow_first.dtype == np.int64 and fast_first.tolist() == slow_first.tolist()
    seen: dict[int, int] = {}
    for i, key in enumerate(keys.tolist()):  # what the pairs mean, said plainly
        assert fast_prev[i] == seen.get(key, -1)
        seen[key] = i
    assert fast_first.tolist() == [keys.tolist().index(w) if w in keys.tolist() else -1 for w in wanted.tolist()]


# ---- fill_records: records made from columns in C (twin: records._records_from_columns_py)
_values = st.one_of(st.none(), st.integers(-(1 << 70), 1 << 70), st.text(max_size=8), st.tuples(st.integers()),
                    st.floats(allow_nan=False), st.booleans())


@needs_ext
@settings(max_examples=60, deadline=None)
@given(st.data())
def test_fill_records_makes_what_the_twin_makes(data):
    """Flow (40 fields) and MediaStream records from columns of arbitrary values: the compiled helper's are equal
    to the twin's, of the very class, their fields the very objects given; the values outlive the columns."""
    import sys

    from meshpcap.flows.media import MediaStream
    from meshpcap.flows.model import Flow
    from meshpcap.flows.records import _makers, _records_from_columns_py

    cls = data.draw(st.sampled_from([Flow, MediaStream]))
    k = len(_makers(cls)[0])
    n = data.draw(st.integers(0, 6))
    columns = [data.draw(st.lists(_values, min_size=n, max_size=n)) for _ in range(k)]
    marker = object()
    if n:
        columns[0][0] = marker
    before = sys.getrefcount(marker)
    made = COMPILED.fill_records(cls, _makers(cls)[0], tuple(columns))
    after = sys.getrefcount(marker)
    twin = _records_from_columns_py(cls, columns)
    assert [type(r) for r in made] == [cls] * n and made == twin
    names = [s.__name__ for s in _makers(cls)[0]]
    for j, r in enumerate(made):
        assert all(getattr(r, name) is columns[i][j] for i, name in enumerate(names))
    if n:
        assert after == before + 1  # one more: the record's
        del columns, twin
        assert made[0].__getattribute__(names[0]) is marker


@needs_ext
def test_fill_records_refuses_what_is_not_its_kind():
    """Columns and slots that do not fit the class are refused with an error, never stored."""
    from meshpcap.flows.media import MediaStream
    from meshpcap.flows.model import Flow
    from meshpcap.flows.records import _makers

    slots = _makers(Flow)[0]
    cols = tuple([1] for _ in slots)
    with pytest.raises(TypeError, match="not a member"):
        COMPILED.fill_records(Flow, _makers(MediaStream)[0][: len(slots)], cols)  # another class's slots
    with pytest.raises(TypeError, match="not a member"):
        COMPILED.fill_records(Flow, (object(),) + slots[1:], cols)
    with pytest.raises(TypeError, match="not a list"):
        COMPILED.fill_records(Flow, slots, ((1,),) + cols[1:])
    with pytest.raises(ValueError, match="unequal"):
        COMPILED.fill_records(Flow, slots, ([1, 2],) + cols[1:])
    with pytest.raises(ValueError, match="twice"):
        COMPILED.fill_records(Flow, (slots[0],) + slots[:-1], cols)
    with pytest.raises(ValueError, match="one slot per column"):
        COMPILED.fill_records(Flow, slots[:-1], cols)
    with pytest.raises(TypeError, match="fixed-size"):
        COMPILED.fill_records(tuple, (), ())
    (partial,) = COMPILED.fill_records(Flow, slots[:1], ([7],))  # a slot no column fills stays unset
    assert partial.id == 7
    with pytest.raises(AttributeError):
        getattr(partial, "transport")  # noqa: B009
