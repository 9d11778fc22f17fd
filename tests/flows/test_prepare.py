"""FlowBuilder.add with the batch grouped beforehand (engine.prepare, as the reader's second
process does) must build exactly what it builds when it groups the batch itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from meshpcap.capture import open_capture
from meshpcap.decode.frames import decode_batch
from meshpcap.flows.engine import FlowBuilder, prepare
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
