"""External programs are run without a shell and with arguments that cannot become options:
a capture named ``-r`` or ``--foo`` is read as a file by tshark, capinfos and meshpcap."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from meshpcap.cli import app
from tests.conftest import SAMPLES
from tests.oracle import capinfos, sni, tshark

SAMPLE = SAMPLES / "quic-and-ipv6.pcapng"


@pytest.fixture(scope="module")
def reference():
    if tshark.TSHARK is None:
        pytest.skip("tshark is not installed")
    return tshark.conversations(SAMPLE), sni.tshark_snis(SAMPLE)


@pytest.fixture(params=["-r", "--foo"])
def oddly_named(request, tmp_path):
    p = tmp_path / request.param
    shutil.copy(SAMPLE, p)
    return p


@pytest.mark.skipif(tshark.TSHARK is None, reason="tshark is not installed")
def test_tshark_oracles_read_the_file(oddly_named, reference):
    if oddly_named.name != "-r":
        pytest.skip("one odd name is enough for tshark (slow to start)")
    convs, names = reference
    assert convs and names
    assert tshark.conversations(oddly_named) == convs
    assert sni.tshark_snis(oddly_named) == names


@pytest.mark.skipif(capinfos.CAPINFOS is None, reason="capinfos is not installed")
def test_capinfos_oracle_reads_the_file(oddly_named):
    n, whole = capinfos.count(oddly_named)
    assert whole and n == capinfos.count(SAMPLE)[0] > 0


def test_meshpcap_reads_a_capture_named_like_an_option(oddly_named, monkeypatch):
    monkeypatch.chdir(oddly_named.parent)
    res = CliRunner().invoke(app, ["flows", "--format", "json", "--", oddly_named.name])
    assert res.exit_code == 0 and '"packets"' in res.stdout, res.output
