"""judge_flow over hand-built flows: every verdict, every blocked_by, confidence, no-snapshot mode."""

from __future__ import annotations

import pytest

from meshpcap.classify import BLOCKED_BY, TAG_UNVERIFIED, VERDICTS
from meshpcap.classify.verdicts import END_GRACE_NS, judge_dns, judge_flow
from meshpcap.flows.model import StunSummary
from tests.classify import make as M
from tests.classify.make import FIREWALL, MESHSVC, OTHER, RELAY, S, T0


def judged(f, **ctx):
    return judge_flow(f, M.context(**ctx))


# -- allowed ----------------------------------------------------------------------------------

def test_allowed_by_name():
    v = judged(M.flow(server="20.73.96.14", sni="mesh.office.com", tls_version="TLS 1.3"))
    assert (v.verdict, v.rule, v.blocked_by, v.matched_by) == ("allowed", "MR-D4", None, "name")
    assert v.destination == "mesh.office.com"
    assert v.confidence == "high"


def test_name_wins_over_address():
    # 20.73.96.14 is AzureCloud (MR-A5), but the SNI names MR-D4: the more specific rule
    v = judged(M.flow(server="20.73.96.14", sni="mesh.office.com"))
    assert v.rule == "MR-D4"


def test_dns_names_name_a_flow_without_sni():
    v = judged(M.flow(server="52.113.194.132", dns_names=("ecs.office.com",)))
    assert (v.verdict, v.rule, v.destination) == ("allowed", "MR-D4", "ecs.office.com")


def test_allowed_by_service_tag():
    v = judged(M.flow(server=MESHSVC, sni="meshsvc-weu.westeurope.cloudapp.azure.com"))
    assert (v.verdict, v.rule, v.matched_by, v.tag_verified) == ("allowed", "MR-A5", "service-tag", True)
    assert v.destination == MESHSVC


def test_ipv6_service_tag():
    v = judged(M.flow(server="2603:1026:2405::1a"))
    assert (v.verdict, v.rule) == ("allowed", "MR-A5")


def test_relay_udp_allowed():
    v = judged(M.flow(transport="udp", server=RELAY, server_port=3478, stun=StunSummary(requests=3, successes=3)))
    assert (v.verdict, v.rule) == ("allowed", "MR-A4")


def test_proxy_connect_200_is_allowed_by_target_name():
    v = judged(M.flow(server="10.20.0.2", server_port=8080, connect_target="mesh.office.com:443", connect_status=200))
    assert (v.verdict, v.rule, v.matched_by, v.destination) == ("allowed", "MR-D4", "name", "mesh.office.com")


def test_microsoft_issued_certificate_is_allowed():
    v = judged(M.flow(sni="meshsvc-weu.westeurope.cloudapp.azure.com", tls_version="TLS 1.2",
                      cert_issuer="Microsoft Azure RSA TLS Issuing CA 04"))
    assert v.verdict == "allowed"


# -- blocked, one test per blocked_by ---------------------------------------------------------

def test_no_answer_tcp():
    v = judged(M.unanswered(transport="tcp"))
    assert (v.verdict, v.rule, v.blocked_by, v.confidence) == ("blocked", "MR-A2", "no-answer", "high")
    assert "3 SYNs got no answer" in v.detail and "silent drop" in v.detail


def test_no_answer_udp_counts_stun_requests():
    v = judged(M.unanswered(transport="udp", server=RELAY, server_port=3478, stun=StunSummary(requests=5)))
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-A4", "no-answer")
    assert "5 STUN requests got no answer" in v.detail


def test_no_answer_udp_counts_datagrams():
    v = judged(M.unanswered(transport="udp", packets_c2s=30))
    assert (v.rule, v.blocked_by) == ("MR-A3", "no-answer")
    assert "30 datagrams got no answer" in v.detail


def test_rejected_by_rst():
    v = judged(M.flow(state="rejected", syn_count=3, packets_s2c=3, sni=None))
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-A5", "rejected")
    assert "every SYN (3) was answered by a TCP RST" in v.detail


def test_reset_right_after_client_hello_is_sni_filtering():
    v = judged(M.flow(server="13.107.246.60", state="reset", sni="mesh.cloud.microsoft"))
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-D6", "rejected")
    assert "ClientHello for mesh.cloud.microsoft" in v.detail


def test_icmp_unreachable_names_sender_type_and_code():
    f = M.unanswered(transport="udp", server=RELAY, server_port=3478, icmp_errors=(M.icmp_error(3, 13),) * 3)
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by, v.confidence) == ("blocked", "MR-A4", "icmp-unreachable", "high")
    assert v.detail.startswith(f"{FIREWALL} answered ICMP destination unreachable: communication administratively "
                               "prohibited (type 3 code 13: a firewall rejected it), 3 times")


def test_icmp_unreachable_on_tcp_and_not_admin_code():
    f = M.unanswered(transport="tcp", server=MESHSVC, server_port=443, icmp_errors=(M.icmp_error(3, 1),))
    v = judged(f)
    assert (v.blocked_by, v.rule) == ("icmp-unreachable", "MR-A5")
    assert "host unreachable (type 3 code 1: it was unreachable), 1 time" in v.detail


def test_icmpv6_admin_prohibited():
    f = M.unanswered(transport="tcp", server="2603:1026:2405::1a", server_port=443,
                     icmp_errors=(M.icmp_error(1, 1, sender="2001:db8:20::1", ip_version=6),))
    v = judged(f)
    assert v.blocked_by == "icmp-unreachable"
    assert "2001:db8:20::1" in v.detail and "type 1 code 1: a firewall rejected it" in v.detail


def test_icmp_error_after_an_answer_does_not_block():
    f = M.flow(transport="udp", server=RELAY, server_port=3478, icmp_errors=(M.icmp_error(3, 3),))
    assert judged(f).verdict == "allowed"


def test_tls_alert():
    f = M.flow(server="13.107.6.171", state="reset", sni="res-1.cdn.office.net", tls_alert="access_denied",
               tls_alert_from="server")
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-D5", "tls-alert")
    assert "TLS alert access_denied right after the ClientHello for res-1.cdn.office.net" in v.detail


def test_proxy_denied():
    f = M.flow(server="10.20.0.2", server_port=8080, connect_target="mesh.cloud.microsoft:443", connect_status=403)
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by, v.destination) == ("blocked", "MR-D6", "proxy-denied",
                                                                 "mesh.cloud.microsoft")
    assert "the proxy 10.20.0.2:8080 answered CONNECT mesh.cloud.microsoft:443 with HTTP 403" == v.detail


def test_tls_intercepted():
    f = M.flow(server="20.73.96.14", sni="mesh.office.com", tls_version="TLS 1.2",
               cert_issuer="Contoso Outbound Inspection CA")
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-D4", "tls-intercepted")
    assert "Contoso Outbound Inspection CA" in v.detail and "TLS-inspecting proxy" in v.detail


@pytest.mark.parametrize("rcode, sinkhole, why", [
    ("NXDOMAIN", False, "NXDOMAIN"),
    ("SERVFAIL", False, "SERVFAIL"),
    ("REFUSED", False, "REFUSED"),
    (None, False, "no answer"),
    ("NOERROR", True, "a sinkhole address (0.0.0.0)"),
])
def test_judge_dns_failures_for_rule_names(rcode, sinkhole, why):
    ev = M.dns("mesh.office.com", rcode, answers=("0.0.0.0",) if sinkhole else (), sinkhole=sinkhole)
    rule, reason = judge_dns(ev, M.matcher())
    assert (rule.id, reason) == ("MR-D4", why)


def test_judge_dns_ignores_good_answers_and_other_names():
    m = M.matcher()
    assert judge_dns(M.dns("mesh.office.com", "NOERROR", answers=("20.73.96.14",)), m) is None
    assert judge_dns(M.dns("www.example.org", "NXDOMAIN"), m) is None


# One hand-built situation per documented blocked_by value: a value added to BLOCKED_BY without a
# situation here (or one that no longer produces its value) fails the test below.
BLOCKED_BY_CASES = {
    "no-answer": lambda: M.unanswered(transport="tcp"),
    "rejected": lambda: M.flow(server=MESHSVC, state="rejected", syn_count=3, packets_s2c=3),
    "icmp-unreachable": lambda: M.unanswered(1, "udp", RELAY, 3478, icmp_errors=(M.icmp_error(3, 13),)),
    "tls-alert": lambda: M.flow(server="13.107.6.171", state="reset", sni="res-1.cdn.office.net",
                                tls_alert="access_denied", tls_alert_from="server"),
    "proxy-denied": lambda: M.flow(server="10.20.0.2", server_port=8080, connect_target="mesh.cloud.microsoft:443",
                                   connect_status=403),
    "tls-intercepted": lambda: M.flow(server="20.73.96.14", sni="mesh.office.com", tls_version="TLS 1.2",
                                      cert_issuer="Contoso Outbound Inspection CA"),
    # judged by findings.judge: the flow that carried a failed lookup of a name a rule needs
    "dns-failure": lambda: (M.dns_flow(9), M.dns("mesh.office.com", "SERVFAIL", flow_id=9)),
    "relay-refused": lambda: M.flow(transport="udp", server=RELAY, server_port=3478, stun=StunSummary(
        requests=2, errors=2, methods=("Allocate request", "Allocate error 401", "Allocate error 403"),
        error_codes=(401, 403))),
}


def _blocked_by_of(case):
    from meshpcap.classify import judge

    built = case()
    if isinstance(built, tuple):
        f, ev = built
        j = judge(M.table([f], [ev]), M.profile(), M.matcher(), True)
        return j.flows[0].blocked_by
    return judged(built).blocked_by


def test_every_blocked_by_is_covered():
    # it used to compare the constant with a literal copy of itself
    assert set(BLOCKED_BY) == set(BLOCKED_BY_CASES), "every blocked_by value needs a case in BLOCKED_BY_CASES"
    for by, case in BLOCKED_BY_CASES.items():
        assert _blocked_by_of(case) == by, by
    assert VERDICTS == ("allowed", "blocked", "unexpected", "unrelated")


# -- confidence: what the capture cannot show --------------------------------------------------

def test_one_direction_capture_makes_no_answer_low_confidence():
    v = judged(M.unanswered(transport="udp"), one_direction=True)
    assert (v.verdict, v.blocked_by, v.confidence) == ("blocked", "no-answer", "low")
    assert "only one direction" in v.detail


def test_flow_near_the_end_of_the_capture_is_low_confidence():
    f = M.unanswered(transport="tcp", first_ns=T0 + 10 * S)
    v = judged(f, last_ns=T0 + 10 * S + END_GRACE_NS - 1)
    assert (v.blocked_by, v.confidence) == ("no-answer", "low")
    assert "the capture ended too soon after to be sure" in v.detail
    assert judged(f, last_ns=T0 + 10 * S + END_GRACE_NS).confidence == "high"


def test_capture_drops_make_no_answer_low_confidence():
    v = judged(M.unanswered(transport="udp"), dropped=12)
    assert (v.blocked_by, v.confidence) == ("no-answer", "low")
    assert "dropped 12 packets" in v.detail


def test_positive_evidence_stays_high_confidence_in_a_doubtful_capture():
    f = M.flow(state="rejected", syn_count=3, packets_s2c=3)
    v = judged(f, one_direction=True, dropped=5, last_ns=f.first_ns)
    assert (v.blocked_by, v.confidence) == ("rejected", "high")


def test_one_way_tcp_is_allowed_but_says_so():
    v = judged(M.flow(state="one-way", packets_s2c=0))
    assert v.verdict == "allowed" and "only one direction" in v.detail


# -- unexpected --------------------------------------------------------------------------------

def test_quic_to_a_name_listed_for_tcp_only():
    f = M.flow(transport="udp", server="52.123.128.14", server_port=443, sni="teams.cloud.microsoft",
               quic_version="1")
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by, v.destination) == ("unexpected", "MR-D6", None, "teams.cloud.microsoft")
    assert v.detail == ("teams.cloud.microsoft is covered by MR-D6 (TCP 443), but this flow used UDP 443 (QUIC)")


def test_named_destination_on_an_unlisted_port():
    v = judged(M.flow(server="20.73.96.14", server_port=8443, sni="mesh.office.com"))
    assert (v.verdict, v.rule) == ("unexpected", "MR-D4")
    assert "TCP 8443" in v.detail


@pytest.mark.parametrize("transport, port, rule", [("udp", 30005, "MR-A3"), ("tcp", 30005, "MR-A2"),
                                                   ("udp", 3478, "MR-A4"), ("udp", 3481, "MR-A4")])
def test_mesh_port_to_an_address_outside_azurecloud(transport, port, rule):
    v = judged(M.flow(transport=transport, server=OTHER, server_port=port))
    assert (v.verdict, v.rule, v.destination) == ("unexpected", rule, OTHER)
    assert f"{transport.upper()} {port} is a media port of the profile, but {OTHER} is in no rule of the profile" in v.detail
    assert "not in the AzureCloud service tag" in v.detail


def test_unexpected_does_not_depend_on_the_outcome():
    v = judged(M.unanswered(transport="udp", server=OTHER, server_port=30005))
    assert v.verdict == "unexpected" and v.blocked_by is None


# -- unrelated ---------------------------------------------------------------------------------

@pytest.mark.parametrize("f", [
    M.flow(server=OTHER, sni="www.example.org"),
    M.flow(transport="udp", server=FIREWALL, server_port=53),
    M.flow(transport="udp", server=OTHER, server_port=3482),  # just outside the relay ports
    M.flow(transport="udp", server=OTHER, server_port=30500),
    M.flow(transport="icmp", server=OTHER, server_port=None),
    M.unanswered(transport="tcp", server="52.113.194.132", server_port=443),  # no name, not AzureCloud
], ids=["other-name", "dns", "udp-3482", "udp-30500", "icmp", "unnamed-non-azure"])
def test_unrelated(f):
    v = judged(f)
    assert (v.verdict, v.rule, v.blocked_by) == ("unrelated", None, None)


# -- no service-tag snapshot ---------------------------------------------------------------------

def test_no_snapshot_judges_azurecloud_rules_on_port_alone():
    v = judged(M.flow(transport="udp", server=OTHER, server_port=30005), with_tags=False)
    assert (v.verdict, v.rule, v.matched_by, v.tag_verified) == ("allowed", "MR-A3", "port", False)
    assert v.detail == TAG_UNVERIFIED


def test_no_snapshot_blocked_verdict_says_not_verified():
    v = judged(M.unanswered(transport="udp", server=RELAY, server_port=3478), with_tags=False)
    assert (v.verdict, v.rule, v.blocked_by, v.tag_verified) == ("blocked", "MR-A4", "no-answer", False)
    assert v.detail.endswith(f"; {TAG_UNVERIFIED}")


def test_no_snapshot_names_still_verified():
    v = judged(M.flow(server="20.73.96.14", sni="mesh.office.com"), with_tags=False)
    assert (v.rule, v.matched_by, v.tag_verified, v.detail) == ("MR-D4", "name", None, None)


def test_to_dict_carries_flow_and_verdict_fields():
    d = judged(M.unanswered(transport="udp", server=RELAY, server_port=3478)).to_dict()
    assert d["id"] == 1 and d["server"] == RELAY
    assert (d["rule"], d["verdict"], d["blocked_by"], d["confidence"]) == ("MR-A4", "blocked", "no-answer", "high")


# -- judge_flows: the shortcut for flows no rule can match gives judge_flow's verdicts ---------------------------

def _mixed_flows():
    """Nameless flows to covered and uncovered servers on rule ports, media ports, tag ports and other ports,
    named flows, a proxied flow, an ICMP flow, each more than once so the per-port memo is hit."""
    out = []
    ports = [("udp", 3478), ("udp", 30012), ("tcp", 30012), ("tcp", 443), ("udp", 443), ("tcp", 80),
             ("udp", 5353), ("tcp", 22), ("udp", 49152), ("udp", None)]
    for server in (OTHER, MESHSVC, RELAY, "2001:db8::9", "203.0.113.5"):
        for transport, port in ports:
            for kw in ({}, dict(packets_s2c=0, bytes_s2c=0, state="one-way" if transport == "udp" else "no-answer")):
                out.append(M.flow(len(out) + 1, transport, server, port, **kw))
    out.append(M.flow(len(out) + 1, "tcp", OTHER, 443, sni="teams.microsoft.com"))
    out.append(M.flow(len(out) + 1, "tcp", OTHER, 8080, connect_target="teams.microsoft.com:443"))
    out.append(M.flow(len(out) + 1, "tcp", OTHER, 8080, connect_target=""))
    out.append(M.flow(len(out) + 1, "udp", OTHER, 5353, dns_names=("mesh.microsoft.com",)))
    for quic in ("v1", None, "v1"):  # one destination, named, on a port its rule does not list: QUIC or not
        out.append(M.flow(len(out) + 1, "udp", OTHER, 8443, sni="teams.microsoft.com", quic_version=quic))
    out.append(M.flow(len(out) + 1, "icmp", OTHER, None))
    return out


@pytest.mark.parametrize("with_tags", [True, False])
def test_judge_flows_equals_judge_flow_on_every_flow(with_tags):
    from meshpcap.classify.verdicts import judge_flows

    flows = _mixed_flows()
    ctx = M.context(with_tags=with_tags)
    expected = [judge_flow(f, M.context(with_tags=with_tags)) for f in flows]
    got = judge_flows(flows, ctx)
    assert got == expected
    assert {v.verdict for v in got} >= {"unrelated", "allowed", "blocked"}


def test_covers_many_agrees_with_by_address():
    m = M.matcher()
    addrs = [OTHER, MESHSVC, RELAY, "2001:db8::9", "203.0.113.5", M.MEDIA, "52.112.0.1", "::1"]
    assert m.covers_many(addrs).tolist() == [bool(m.by_address(a)) for a in addrs]
    bare = M.matcher(with_tags=False)
    assert bare.covers_many(addrs).tolist() == [bool(bare.by_address(a)) for a in addrs]


def test_unrelated_shortcut_is_the_dataclass():
    from dataclasses import fields

    from meshpcap.classify.verdicts import FlowVerdict, _unrelated

    f = M.flow(server=OTHER, server_port=9)
    v = _unrelated(f, OTHER)
    assert v == FlowVerdict(f, "unrelated", destination=OTHER)
    assert all(getattr(v, x.name) == getattr(FlowVerdict(f, "unrelated", destination=OTHER), x.name)
               for x in fields(FlowVerdict))
