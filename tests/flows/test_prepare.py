"""FlowBuilder.add with the batch grouped beforehand (engine.prepare, as the reader's second
process does) must build exactly what it builds when it groups the batch itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from meshpcap.capture import open_capture
from meshpcap.decode.frames import decode_batch
from meshpcap.flows.engine import FlowBuilder, evidence_candidates, prepare
from tests import builders as b
from tests.conftest import SAMPLES


def _raw(path, pre: bool, batch_bytes: int):
    fb = FlowBuilder()
    used = 0
    with open_capture(path, batch_bytes=batch_bytes) as cap:
        for batch in cap.batches():
            d = decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
            g = prepare(batch, d, trim=True) if pre else None  # trimmed, as the pipeline sends them
            used += g is not None
            fb.add(batch, d, g)
    return fb.finish(), used


def _comparable(raw) -> dict:
    out = {}
    for f in dataclasses.fields(raw):
        v = getattr(raw, f.name)
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif f.name == "slot_keys":  # a SlotTable: its key tuples
            v = list(v)
        elif f.name == "tcp":
            v = {k: {s: getattr(t, s) for s in t.__slots__} for k, t in v.items()}
        elif f.name == "evidence":
            v = {k: [dataclasses.astuple(e) if dataclasses.is_dataclass(e) else tuple(e) for e in lst]
                 for k, lst in v.items()}
        out[f.name] = v
    return out


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
@pytest.mark.parametrize("batch_bytes", [2048, 1 << 20])
def test_prepared_batches_build_the_same_flows(sample, batch_bytes):
    fast, used = _raw(SAMPLES / sample, True, batch_bytes)
    slow, _ = _raw(SAMPLES / sample, False, batch_bytes)
    assert used > 0
    assert _comparable(fast) == _comparable(slow)


def test_batches_with_fragments_are_grouped_by_the_builder(tmp_path):
    """Later fragments take their ports from earlier batches: prepare leaves such batches alone."""
    from scapy.all import IP, UDP, Raw, fragment  # noqa: PLC0415

    frags = fragment(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=3478) / Raw(b"x" * 3000), 1000)
    path = b.write_pcap(tmp_path / "frag.pcap", [(i, b.ether(bytes(f))) for i, f in enumerate(frags)])
    with open_capture(path) as cap:
        for batch in cap.batches():
            d = decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
            assert prepare(batch, d) is None
    fast, _ = _raw(path, True, 1 << 20)
    assert fast.decoded == len(frags) and len(fast.pk_a) == 1  # every fragment counted on the one flow
    assert int(fast.pk_a[0] + fast.pk_b[0]) == len(frags)


def _busy_capture(tmp_path):
    """Flow directions past their evidence bounds, with 5-tuples reused inside a batch: a TCP connection
    of 40 segments each way, then a new SYN on the same ports (new ISN) and a retransmitted one; UDP
    with 30 datagrams, an idle gap and 30 more; 30 DNS datagrams; 90 STUN messages among 90 datagrams."""
    from meshpcap.testing.stun import build_stun

    sec = b.SEC
    pk, t = [], b.T0
    cl, sv = "10.0.0.1", "52.112.0.10"
    for attempt, isn in enumerate((100, 5000, 5000)):  # the third: a retransmitted SYN of the second
        pk.append((t, b.ether(b.tcp4(cl, 50000, sv, 443, "S", seq=isn))))
        t += 1000
        if attempt == 2:
            continue
        srv = 9000 + 1000 * attempt
        pk.append((t, b.ether(b.tcp4(sv, 443, cl, 50000, "SA", seq=srv, ack=isn + 1))))
        for i in range(40):
            t += 1000
            pk.append((t, b.ether(b.tcp4(cl, 50000, sv, 443, "PA", seq=isn + 1 + 10 * i, payload=b"c" * 10))))
            pk.append((t, b.ether(b.tcp4(sv, 443, cl, 50000, "PA", seq=srv + 1 + 10 * i, payload=b"s" * 10))))
        pk.append((t + 1, b.ether(b.tcp4(cl, 50000, sv, 443, "FA", seq=isn + 401))))
        t += 2_000_000  # 2 ms: the retransmitted SYN is not taken for a duplicate
    for _burst in range(2):
        for i in range(30):
            t += 1000
            pk.append((t, b.ether(b.udp4(cl, 50010, sv, 3479, b"m%d" % i))))
            pk.append((t, b.ether(b.udp4(cl, 50011, sv, 53, b"d%d" % i))))
        t += 2 * sec  # longer than the idle split of the test's second builder
    for i in range(90):
        t += 1000
        msg = build_stun(0x001, 0, [], bytes([i]) * 12) if i % 2 else b"rtp%d" % i
        pk.append((t, b.ether(b.udp4(cl, 50012, sv, 3478, msg))))
    return b.write_pcap(tmp_path / "busy.pcap", pk)


@pytest.mark.parametrize("idle_ns", [None, b.SEC])
@pytest.mark.parametrize("batch_bytes", [700, 5000, 1 << 20])
def test_evidence_candidates_keep_what_the_builder_keeps(tmp_path, idle_ns, batch_bytes):
    """The builder ranks only evidence_candidates (made in prepare): the same evidence, and the same
    final-evidence points for the early namer, as when it ranks every payload."""
    path = _busy_capture(tmp_path)
    kw = {} if idle_ns is None else {"idle_ns": idle_ns}
    out = []
    for with_candidates in (True, False):
        fb = FlowBuilder(**kw)
        counts = []
        with open_capture(path, batch_bytes=batch_bytes) as cap:
            for batch in cap.batches():
                d = decode_batch(batch.data, batch.offset, batch.caplen, batch.linktype)
                g = prepare(batch, d, trim=True)
                if not with_candidates:
                    g.ev_cand = None
                elif idle_ns is not None:  # chosen for the builder's idle split (prepare assumes the default)
                    evidence_candidates(batch, d, g, idle_ns)
                fb.add(batch, d, g)
                # what the counts must say: exact under the smallest bound (UDP), and for TCP (whose bound the
                # early namer asks) whether they reached theirs
                tcp = sorted(fb.tcp)
                counts.append([(np.minimum(c.a[: fb.nflows], 8).tolist(), (c.a[tcp] >= 16).tolist())
                               for c in (fb.f_pay_a, fb.f_pay_b)])
        out.append((_comparable(fb.finish()), counts))
    assert out[0] == out[1]
    ev = out[0][0]["evidence"]
    assert {32, 49} <= {len(v) for v in ev.values()} and len(ev) >= 5  # the bounds were reached
