"""A TURN Allocate refused by the relay (issue 8 section 3): blocked, ``blocked_by`` "relay-refused", the code in
the detail; the 401 challenge followed by success is the normal exchange."""

from __future__ import annotations

import sys

import pytest

from meshpcap import analyze
from meshpcap import testing as mt
from meshpcap.classify.verdicts import judge_flow, relay_refusal
from meshpcap.flows.model import StunSummary
from tests.classify import make as M
from tests.classify.make import RELAY
from tests.conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))
import make_samples as ms  # noqa: E402


def summary(*methods: str) -> StunSummary:
    codes = tuple(int(m.rsplit(" ", 1)[1]) for m in methods if " error " in m)
    return StunSummary(requests=sum(" request" in m for m in methods), successes=sum(" success" in m for m in methods),
                       errors=len(codes), methods=methods, error_codes=codes)


@pytest.mark.parametrize("code,name", [(403, "Forbidden"), (486, "Allocation Quota Reached"),
                                       (508, "Insufficient Capacity"), (441, "Wrong Credentials")])
def test_allocate_refused_after_the_challenge(code, name):
    s = summary("Allocate request", "Allocate error 401", f"Allocate error {code}")
    v = judge_flow(M.flow(transport="udp", server=RELAY, server_port=3478, stun=s), M.context())
    assert (v.verdict, v.blocked_by, v.rule, v.confidence) == ("blocked", "relay-refused", "MR-A4", "high")
    assert f"error {code} {name} after the 401 challenge" in v.detail and "no relayed address" in v.detail


@pytest.mark.parametrize("methods", [
    ("Allocate request", "Allocate error 401", "Allocate success"),  # the usual exchange
    ("Allocate request", "Allocate error 401", "Allocate error 438", "Allocate success"),  # a stale nonce renewed
    ("Allocate request", "Allocate error 401"),  # challenged, never retried: not a refusal by policy
    ("Allocate request", "Allocate error 403", "Allocate success"),  # refused once, granted later
    ("Binding request", "Binding error 403"),  # not an allocation
])
def test_not_refused(methods):
    assert relay_refusal(summary(*methods)) is None
    v = judge_flow(M.flow(transport="udp", server=RELAY, server_port=3478, stun=summary(*methods)), M.context())
    assert v.blocked_by != "relay-refused"


def test_channel_data_shows_an_allocation():
    s = summary("Allocate request", "Allocate error 401", "Allocate error 403")
    from dataclasses import replace

    assert relay_refusal(replace(s, channel_data=40)) is None


def test_refused_over_tcp_443_too():
    s = summary("Allocate request", "Allocate error 401", "Allocate error 486")
    v = judge_flow(M.flow(server=RELAY, server_port=443, stun=s), M.context())
    assert (v.verdict, v.blocked_by) == ("blocked", "relay-refused")


def refused_capture(tmp_path, code: int):
    """Allocate -> 401 -> Allocate with credentials -> ``code``, written by the sample generator's TURN client."""
    cap = ms.Capture(f"turn-{code}")
    turn = ms.TurnClient(cap, ms.RELAY, 3478)
    realm = (ms.stun.REALM, ms.TURN_REALM.encode())
    nonce = (ms.stun.NONCE, b"0123456789abcdef")
    t = turn.transaction(0, ms.ALLOCATE, lambda tid: [ms.UDP_TRANSPORT], ms.ERROR,
                         lambda tid: [mt.stun.build_error_code(401, "Unauthorized"), realm, nonce],
                         signed=False, rtt=20 * ms.MS)
    turn.auth = [(ms.stun.USERNAME, ms.TURN_USER.encode()), realm, nonce]
    turn.transaction(t + 2 * ms.MS, ms.ALLOCATE, lambda tid: [ms.UDP_TRANSPORT], ms.ERROR,
                     lambda tid: [mt.stun.build_error_code(code, "Refused")], signed=True, rtt=20 * ms.MS)
    path = tmp_path / f"{cap.name}.pcapng"
    path.write_bytes(ms.pcapng_bytes(cap))
    return path


def test_refused_allocation_in_a_capture_is_a_block(tmp_path):
    r = analyze(refused_capture(tmp_path, 403), service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json")
    d = r.to_dict()
    flows = [f for f in d["flows"] if f["server_port"] == 3478]
    assert [(f["verdict"], f["blocked_by"]) for f in flows] == [("blocked", "relay-refused")]
    assert "error 403 Forbidden" in flows[0]["detail"]
    refused = [f for f in d["findings"] if f["blocked_by"] == "relay-refused"]
    assert len(refused) == 1 and refused[0]["kind"] == "blocked" and "refused the allocation" in refused[0]["fix"]
    assert "403 Forbidden" in refused[0]["detail"]
