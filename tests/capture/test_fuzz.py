"""Fuzz: a valid capture's prefix plus random bytes yields CaptureError or clean batches, nothing else."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.capture import open_capture
from meshpcap.errors import CaptureError
from tests.capture import writers as w

VALID = {
    "pcap": w.pcap([(1, 2, b"abcdef"), (3, 4, b"x" * 70, 100), (5, 6, b"")]),
    "pcap-be-ns": w.pcap([(1, 2, b"abcdef"), (3, 4, b"yz")], order=">", nano=True),
    "pcapng": (w.shb() + w.idb(name="eth0", tsresol=9) + w.epb(ts=5, data=b"abcdef") + w.spb(data=b"qq")
               + w.isb(ifdrop=3) + w.opb(ts=7, data=b"o") + w.shb(">") + w.idb(">", 228, tsresol=0x94)
               + w.epb(">", 0, 99, b"tail")),
}
VALID["pcap.gz"] = gzip.compress(VALID["pcap"])
TMP = Path()  # the module's scratch directory (pytest's, removed with its old runs): see _scratch


@pytest.fixture(scope="module", autouse=True)
def _scratch(tmp_path_factory):
    global TMP
    TMP = tmp_path_factory.mktemp("fuzz")


def _walk(data: bytes, batch_bytes: int) -> None:
    path = TMP / "f.bin"
    path.write_bytes(data)
    try:
        cap = open_capture(path, batch_bytes=batch_bytes)
    except CaptureError:
        return
    n = 0
    for batch in cap.batches():
        assert batch.first_record == n
        assert len(batch) and int((batch.offset + batch.caplen).max()) <= len(batch.data)
        assert (batch.caplen >= 0).all()
        n += len(batch)
    assert cap.info.records == n
    cap.info.to_dict()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(VALID)), cut=st.integers(0, 400), junk=st.binary(max_size=120),
       batch_bytes=st.sampled_from([1, 13, 64, 1 << 16]))
def test_prefix_plus_random(kind, cut, junk, batch_bytes):
    valid = VALID[kind]
    _walk(valid[: cut % (len(valid) + 1)] + junk, batch_bytes)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(VALID)), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                            max_size=4))
def test_byte_flips(kind, flips):
    data = bytearray(VALID[kind])
    for at, value in flips:
        data[at % len(data)] = value
    _walk(bytes(data), 64)
