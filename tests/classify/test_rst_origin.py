"""Who sent a RST: its TTL tells how far away the sender was."""

from __future__ import annotations

import pytest

from meshpcap import analyze, read_flows
from meshpcap.flows.model import hops_away
from tests.conftest import SAMPLES

TAGS = SAMPLES / "ServiceTags_Public_SAMPLE.json"


@pytest.mark.parametrize("ttl, hops", [(64, 0), (62, 2), (128, 0), (114, 14), (255, 0), (250, 5), (65, 63),
                                       (0, None), (None, None)])
def test_hops_away(ttl, hops):
    assert hops_away(ttl) == hops


def test_reject_rst_sample_names_a_nearby_firewall():
    ft = read_flows(SAMPLES / "reject-rst.pcapng")
    rejected = [f for f in ft.flows if f.state == "rejected"]
    assert rejected and all(f.rst_from == "server" and f.rst_ttl == 64 for f in rejected)
    report = analyze(SAMPLES / "reject-rst.pcapng", service_tags=TAGS)
    found = [f for f in report.judgement.findings if f.blocked_by == "rejected"]
    assert len(found) == 2
    for f in found:
        assert "forged by a firewall near the capture point" in f.detail
        assert "a firewall 0 hops from the capture point (RST TTL 64)" in f.fix


def test_rst_after_data_is_recorded_with_its_side():
    ft = read_flows(SAMPLES / "tls-refused.pcapng")
    refused = [f for f in ft.flows if f.tls_alert]
    assert refused and all(f.rst_from == "server" for f in refused)
