"""judge() over hand-built flow tables: grouping, fixes, expected groups, checklist, warnings, --fail-on."""

from __future__ import annotations

import pytest

from meshpcap.classify import FAIL_ON, TAG_UNVERIFIED, Finding, failing, judge
from meshpcap.flows.model import StunSummary
from tests.classify import make as M
from tests.classify.make import END, FIREWALL, MEDIA, OTHER, RELAY, S, T0


def run(flows, dns=(), with_tags=True, fail_on="missing", prof=None, **capture):
    prof = prof or M.profile()
    return judge(M.table(flows, dns, **capture), prof, M.matcher(prof, with_tags), with_tags, fail_on)


def healthy(start_id: int = 100):
    """One working flow for each expected group of multi-room."""
    return [
        M.flow(start_id, server="20.73.96.14", sni="mesh.office.com", tls_version="TLS 1.3"),
        M.flow(start_id + 1, "udp", RELAY, 3478, stun=StunSummary(requests=4, successes=4)),
        M.flow(start_id + 2, "udp", MEDIA, 30012),
    ]


def by_kind(j, kind):
    return [f for f in j.findings if f.kind == kind]


def status(j, rule):
    return next(c.status for c in j.checklist if c.rule == rule)


def group(j, gid):
    return next(g for g in j.groups if g.id == gid)


# -- a clean session ---------------------------------------------------------------------------

def test_healthy_session_passes_with_no_findings():
    j = run(healthy())
    assert j.verdict == "pass" and j.findings == [] and j.warnings == []
    assert [(g.id, g.status) for g in j.groups] == [("mesh-service", "met"), ("media-relay", "met"),
                                                     ("mesh-30000", "met")]
    assert j.counts == {"allowed": 3, "blocked": 0, "unexpected": 0, "unrelated": 0}


def test_checklist_has_every_rule_in_profile_order():
    j = run(healthy())
    assert [c.rule for c in j.checklist] == [r.id for r in M.profile().rules]
    # the flow to mesh.office.com at an AzureCloud address counts under both MR-D4 and MR-A5 (issue 8 section 2)
    assert {c.rule: c.status for c in j.checklist if c.status != "not seen"} == {
        "MR-D4": "ok", "MR-A5": "ok", "MR-A4": "ok", "MR-A3": "ok"}
    mr_a4 = next(c for c in j.checklist if c.rule == "MR-A4")
    assert (mr_a4.ports, mr_a4.destination, mr_a4.flows) == ("UDP 3478-3481", "the AzureCloud service tag", 1)


# -- grouping ----------------------------------------------------------------------------------

def test_forty_retries_make_one_finding():
    retries = [M.unanswered(i, "tcp", MEDIA, 30012, client_port=40000 + i, first_ns=T0 + i * S // 10)
               for i in range(1, 41)]
    j = run(healthy() + retries)
    blocked = by_kind(j, "blocked")
    assert len(blocked) == 1
    f = blocked[0]
    assert (f.id, f.kind, f.severity, f.rule, f.blocked_by, f.destination) == (
        "F1", "blocked", "error", "MR-A2", "no-answer", MEDIA)
    assert f.flow_ids == tuple(range(1, 41))
    assert "40 flows" in f.detail
    assert f.title == "TCP 30012 to 20.73.100.20 got no answer (silently dropped)"
    assert f.fix == ("allow TCP 30000-30499 outbound to the AzureCloud service tag; packets to 20.73.100.20:30012 "
                     "are dropped silently")
    assert f.source == M.profile().rule("MR-A2").source
    assert j.verdict == "fail"


def test_one_finding_per_destination_and_port_not_per_flow():
    flows = [M.unanswered(1, "udp", MEDIA, 30012), M.unanswered(2, "udp", MEDIA, 30012, client_port=40002),
             M.unanswered(3, "udp", MEDIA, 30013), M.unanswered(4, "tcp", MEDIA, 30012)]
    j = run(flows + healthy()[:2])
    got = sorted((f.rule, f.flow_ids) for f in by_kind(j, "blocked"))
    assert got == [("MR-A2", (4,)), ("MR-A3", (1, 2)), ("MR-A3", (3,))]
    assert group(j, "mesh-30000").status == "blocked"
    assert status(j, "MR-A3") == "blocked" and status(j, "MR-A2") == "blocked"


def test_same_name_on_two_addresses_is_one_finding():
    flows = [M.flow(1, server="13.107.246.60", state="rejected", syn_count=3, sni=None,
                    dns_names=("mesh.cloud.microsoft",)),
             M.flow(2, server="13.107.246.61", state="rejected", syn_count=3, sni=None,
                    dns_names=("mesh.cloud.microsoft",))]
    j = run(flows + healthy())
    (f,) = by_kind(j, "blocked")
    assert (f.rule, f.destination, f.flow_ids) == ("MR-D6", "mesh.cloud.microsoft", (1, 2))


def test_unexpected_flows_group_by_server_and_port():
    flows = [M.flow(i, "udp", OTHER, 30005, client_port=41000 + i) for i in range(1, 4)]
    j = run(healthy() + flows)
    (f,) = by_kind(j, "unexpected")
    assert (f.severity, f.rule, f.flow_ids, f.destination) == ("error", "MR-A3", (1, 2, 3), OTHER)
    assert f.title == "unexpected UDP 30005 to 198.51.100.77"
    assert "3 flows" in f.detail
    assert "service-tag snapshot may be out of date" in f.fix
    assert j.verdict == "pass"  # unexpected does not fail by default
    assert run(healthy() + flows, fail_on="unexpected").verdict == "fail"


# -- each blocked_by gets its own fix --------------------------------------------------------------

def test_fixes_name_the_evidence():
    flows = [
        M.unanswered(1, "udp", RELAY, 3478, icmp_errors=(M.icmp_error(3, 13),)),
        M.flow(2, server="13.107.6.171", state="reset", sni="res-1.cdn.office.net", tls_alert="access_denied",
               tls_alert_from="server"),
        M.flow(3, server="10.20.0.2", server_port=8080, connect_target="mesh.cloud.microsoft:443",
               connect_status=403),
        M.flow(4, server="20.73.96.14", sni="mesh.office.com", tls_version="TLS 1.2", cert_issuer="Contoso Proxy CA"),
        M.flow(5, server="13.107.246.60", state="reset", sni="mesh.cloud.microsoft"),
    ]
    j = run(flows + healthy()[::2])  # no working relay flow
    fixes = {f.blocked_by: f for f in by_kind(j, "blocked")}
    assert set(fixes) == {"icmp-unreachable", "tls-alert", "proxy-denied", "tls-intercepted", "rejected"}
    assert fixes["icmp-unreachable"].fix.endswith(
        "the firewall at 10.20.0.1 answered ICMP destination unreachable: communication administratively prohibited")
    assert "type 3 code 13" in fixes["icmp-unreachable"].detail
    assert "exempt res-1.cdn.office.net from SNI/TLS filtering (it answered alert access_denied)" in fixes["tls-alert"].fix
    assert fixes["proxy-denied"].fix == ("allow CONNECT to mesh.cloud.microsoft:443 on the proxy 10.20.0.2:8080 "
                                         "(it answered HTTP 403); rule MR-D6")
    assert fixes["proxy-denied"].title == ("CONNECT mesh.cloud.microsoft:443 via the proxy 10.20.0.2:8080 was refused "
                                           "by the proxy")
    assert fixes["tls-intercepted"].fix == ("exempt mesh.office.com from TLS inspection "
                                            "(certificate issued by Contoso Proxy CA)")
    assert "remove the SNI filter for it" in fixes["rejected"].fix
    assert all(f.severity == "error" for f in fixes.values())
    # media-relay was tried and failed, with no fallback
    assert group(j, "media-relay").status == "blocked"


# -- DNS ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("rcode, sinkhole, severity, why", [
    ("SERVFAIL", False, "error", "SERVFAIL"),
    ("NXDOMAIN", False, "warning", "NXDOMAIN"),
    ("NOERROR", True, "error", "a sinkhole address (0.0.0.0)"),
    (None, False, "error", "no answer"),
])
def test_dns_failure_for_a_rule_name(rcode, sinkhole, severity, why):
    ev = M.dns("mesh-telemetry.office.com", rcode, flow_id=7, answers=("0.0.0.0",) if sinkhole else (),
               sinkhole=sinkhole)
    j = run(healthy() + [M.dns_flow(7)], [ev])
    (f,) = by_kind(j, "blocked")
    assert (f.blocked_by, f.severity, f.rule, f.flow_ids, f.destination) == (
        "dns-failure", severity, "MR-D4", (7,), "mesh-telemetry.office.com")
    assert f.title == f"DNS lookup of mesh-telemetry.office.com failed: {why}"
    assert f"from {FIREWALL}" in f.detail
    v = next(v for v in j.flows if v.flow.id == 7)
    assert (v.verdict, v.rule, v.blocked_by) == ("blocked", "MR-D4", "dns-failure")
    assert j.verdict == ("pass" if severity == "warning" else "fail")


def test_dns_lookups_of_one_name_make_one_finding():
    evs = [M.dns("mesh.cloud.microsoft", "SERVFAIL", flow_id=i) for i in (7, 8, 9)]
    j = run(healthy() + [M.dns_flow(i) for i in (7, 8, 9)], evs)
    (f,) = by_kind(j, "blocked")
    assert f.flow_ids == (7, 8, 9) and f.detail.startswith("3 lookups of mesh.cloud.microsoft")
    assert status(j, "MR-D6") == "blocked"


def test_dns_failure_for_other_names_is_ignored():
    j = run(healthy() + [M.dns_flow(7)], [M.dns("www.example.org", "NXDOMAIN", flow_id=7)])
    assert j.findings == []
    assert next(v for v in j.flows if v.flow.id == 7).verdict == "unrelated"


def test_dns_without_answer_at_the_end_of_the_capture_is_not_claimed():
    ev = M.dns("mesh.office.com", None, flow_id=7, ns=END - S)
    j = run(healthy() + [M.dns_flow(7, packets_s2c=0)], [ev])
    (f,) = by_kind(j, "blocked")
    assert f.severity == "warning" and "may simply have missed it" in f.title
    assert next(v for v in j.flows if v.flow.id == 7).confidence == "low"


# -- expected groups: missing and fallback --------------------------------------------------------

def test_session_without_relay_and_media_misses_those_groups():
    j = run(healthy()[:1])
    missing = by_kind(j, "missing")
    assert [f.title for f in missing] == [
        "no traffic: a working session reaches the media relay on UDP 3478-3481",
        "no traffic: a working session exchanges Mesh traffic with AzureCloud on ports 30000-30499",
    ]
    assert all(f.severity == "error" for f in missing)
    assert missing[1].rule == "MR-A2,MR-A3"
    assert (missing[0].clients, missing[0].first_ns, missing[0].last_ns) == ((), None, None)
    assert j.verdict == "fail" and j.reason is None


def test_empty_capture_is_inconclusive_and_gives_no_advice():
    # it used to give three "missing" errors, each with firewall advice, for a capture with nothing in it
    j = run([])
    assert j.verdict == "inconclusive"
    assert "not one of its 0 flows or 0 DNS lookups" in j.reason
    assert by_kind(j, "missing") == []
    assert {(g.status, g.detail) for g in j.groups} == {("not shown", "the capture shows no session")}
    statuses = {c.rule: c.status for c in j.checklist}
    assert statuses["MR-A4"] == "not seen" and statuses["MR-D1"] == "not seen"


def test_groups_without_traffic_are_missing_in_a_session():
    j = run(healthy()[:1])
    statuses = {c.rule: c.status for c in j.checklist}
    assert statuses["MR-A4"] == "missing" and statuses["MR-D4"] == "ok" and statuses["MR-D1"] == "not seen"
    assert statuses["MR-A1"] == "not seen"  # TCP 80 to AzureCloud is never "missing"


def test_only_expected_groups_can_be_missing():
    j = run(healthy())
    assert by_kind(j, "missing") == []
    assert status(j, "MR-D3") == "not seen" and status(j, "MR-A1") == "not seen"


def test_relay_fallback_to_tcp_443_is_reported():
    flows = [
        M.flow(1, server="20.73.96.14", sni="mesh.office.com"),
        M.unanswered(2, "udp", RELAY, 3478, stun=StunSummary(requests=5)),
        M.flow(3, "tcp", RELAY, 443, stun=StunSummary(requests=3, successes=2, errors=1, channel_data=40)),
        M.flow(4, "udp", MEDIA, 30012),
    ]
    j = run(flows)
    g = group(j, "media-relay")
    assert g.status == "met-by-fallback"
    assert "client fell back to TCP 443 for the media relay" in g.detail and "no-answer" in g.detail
    blocked = by_kind(j, "blocked")
    assert [(f.severity, f.rule, f.blocked_by) for f in blocked] == [("error", "MR-A4", "no-answer"),
                                                                       ("info", "MR-A5", None)]
    info = blocked[1]
    assert info.title == "media-relay: client fell back to TCP 443 for the media relay"
    assert info.source == M.profile().rule("MR-A5").source  # the source of the rule it names
    assert "MR-A4: UDP 3478-3481" in info.fix
    assert info.flow_ids == (3, 2)
    assert status(j, "MR-A4") == "blocked" and status(j, "MR-A5") == "ok"


def test_tcp_443_elsewhere_is_not_a_relay_fallback():
    flows = [M.flow(1, server="20.73.96.14", sni="mesh.office.com"),
             M.unanswered(2, "udp", RELAY, 3478, stun=StunSummary(requests=5)),
             M.flow(3, server="20.50.2.40"), M.flow(4, "udp", MEDIA, 30012)]
    assert group(run(flows), "media-relay").status == "blocked"


def test_checklist_blocked_wins_over_ok_for_the_same_rule():
    flows = healthy() + [M.flow(1, server="20.73.96.15", state="rejected", syn_count=3, sni="res.office.com")]
    assert status(run(flows), "MR-D4") == "blocked"


def test_checklist_unexpected():
    flows = healthy() + [M.flow(1, "udp", "52.123.128.14", 443, sni="teams.cloud.microsoft", quic_version="1")]
    assert status(run(flows), "MR-D6") == "unexpected"


# -- the capture judges itself -------------------------------------------------------------------

def test_mid_session_capture_warns_but_does_not_explain_missing_media():
    # a capture that began mid-session explains a TCP flow without a handshake, not absent UDP media or
    # absent 30000-30499 traffic (it used to soften both to warnings and PASS)
    flows = [M.flow(i, server="20.73.96.14", orientation="ports", state="midstream", syn_count=0) for i in (1, 2)]
    j = run(flows)
    assert any(w.startswith("the capture began mid-session: 2 of 2 TCP flows have no handshake") for w in j.warnings)
    missing = by_kind(j, "missing")
    assert [(f.rule, f.severity) for f in missing] == [("MR-A4", "error"), ("MR-A2,MR-A3", "error")]
    assert j.verdict == "fail"


def test_mid_session_explains_a_missing_group_matched_by_name_only():
    # an unnamed TCP 443 flow without a handshake may be the Mesh service contact: its SNI came before the capture
    prof = M.profile("single-room")
    flows = [M.flow(1, server="198.51.100.9", orientation="ports", state="midstream", syn_count=0)]
    j = run(flows + [M.flow(2, "udp", "52.112.0.9", 3478, sni=None)], prof=prof)
    soft = [f for f in by_kind(j, "missing") if f.severity == "warning"]
    assert soft and all("flow 1 to 198.51.100.9:443 has no handshake" in f.detail for f in soft)
    # the same flow with a handshake explains nothing
    j2 = run([M.flow(1, server="198.51.100.9")] + [M.flow(2, "udp", "52.112.0.9", 3478)], prof=prof)
    assert {f.severity for f in by_kind(j2, "missing")} == {"error"}


def test_one_direction_capture_warns_and_nothing_is_surely_blocked():
    flows = [M.unanswered(1, "udp", RELAY, 3478), M.unanswered(2, "udp", MEDIA, 30012),
             M.unanswered(3, "tcp", "20.73.96.14", 443, sni="mesh.office.com")]
    j = run(flows)
    assert any("only one direction of traffic" in w for w in j.warnings)
    blocked = by_kind(j, "blocked")
    assert len(blocked) == 3
    assert all(f.severity == "warning" and f.title.startswith("possibly blocked: ") for f in blocked)
    # every expected group was tried and nothing shows whether it worked: neither pass nor fail
    assert j.verdict == "inconclusive"
    assert j.reason.startswith("the capture cannot show whether mesh-service, media-relay, mesh-30000 worked")


@pytest.mark.parametrize("capture, text", [
    ({"truncated": {"record": 17, "offset": 4000, "reason": "record cut short"}},
     "the capture is truncated at record 17: record cut short"),
    ({"cut_by_snaplen": 9}, "9 packets were cut by the snapshot length"),
    ({"dropped_by_capture": 4}, "the capturing host reported 4 dropped packets"),
    ({"undecoded": {"bad IPv4 header": 2, "not IP (ARP)": 5}}, "packets that could not be decoded: bad IPv4 header: 2"),
])
def test_capture_warnings(capture, text):
    j = run(healthy(), **capture)
    assert any(text in w for w in j.warnings), j.warnings
    assert not any("ARP" in w for w in j.warnings)


def test_drops_soften_no_answer():
    j = run(healthy() + [M.unanswered(1, "udp", MEDIA, 30013)], dropped_by_capture=3)
    (f,) = by_kind(j, "blocked")
    assert f.severity == "warning" and "dropped 3 packets" in f.detail
    assert j.verdict == "pass"


def test_truncated_capture_softens_missing_only_after_the_cut():
    cut = {"record": 3, "offset": 100, "reason": "cut"}
    # cut 4 s after the session began: relay and media may have come after the cut
    j = run([M.flow(1, server="20.73.96.14", sni="mesh.office.com")], truncated=cut, last_ns=T0 + 5 * S)
    assert {f.severity for f in by_kind(j, "missing")} == {"warning"}
    assert all("truncated 4.0 s after the session's first traffic" in f.detail for f in by_kind(j, "missing"))
    assert j.verdict == "inconclusive"
    # a minute of session before the cut: the absence is before it, and the truncation explains nothing
    j = run([M.flow(1, server="20.73.96.14", sni="mesh.office.com")], truncated=cut)
    assert {f.severity for f in by_kind(j, "missing")} == {"error"} and j.verdict == "fail"


# -- no service-tag snapshot ------------------------------------------------------------------------

def test_no_snapshot_warns_and_every_such_verdict_says_so():
    flows = healthy() + [M.unanswered(1, "udp", MEDIA, 30013)]
    j = run(flows, with_tags=False)
    assert j.warnings[0].startswith(f"{TAG_UNVERIFIED}: no service-tag snapshot was given or cached")
    for v in j.flows:
        if v.matched_by == "port":
            assert TAG_UNVERIFIED in v.detail
    assert sum(1 for v in j.flows if v.matched_by == "port") == 3
    (f,) = by_kind(j, "blocked")
    assert f.detail.count(TAG_UNVERIFIED) == 1


# -- --fail-on --------------------------------------------------------------------------------------

def _finding(kind, severity="error"):
    return Finding("F1", kind, severity, None, None, "t", "d", "f")


@pytest.mark.parametrize("fail_on, fails", [
    ("blocked", {"blocked"}),
    ("missing", {"blocked", "missing"}),
    ("unexpected", {"blocked", "missing", "unexpected"}),
    ("warning", {"blocked", "missing", "unexpected"}),
    ("never", set()),
])
def test_fail_on_order(fail_on, fails):
    found = {"blocked": _finding("blocked"), "missing": _finding("missing"), "unexpected": _finding("unexpected")}
    assert {k for k, f in found.items() if failing([f], fail_on)} == fails


def test_fail_on_treats_warning_severity_alike_for_every_kind():
    # a warning-severity unexpected finding used to fail under --fail-on unexpected while a warning-severity
    # blocked one never did
    soft = [_finding(k, "warning") for k in ("blocked", "missing", "unexpected")] + [_finding("blocked", "info")]
    for fail_on in ("blocked", "missing", "unexpected", "never"):
        assert failing(soft, fail_on) == []
    assert failing(soft, "warning") == soft


def test_fail_on_warning_is_strict():
    j = run(healthy() + [M.unanswered(1, "udp", MEDIA, 30013)], dropped_by_capture=3)
    assert j.verdict == "pass" and run(healthy() + [M.unanswered(1, "udp", MEDIA, 30013)], dropped_by_capture=3,
                                       fail_on="warning").verdict == "fail"
    # a capture-quality warning alone fails too
    assert run(healthy(), cut_by_snaplen=2).verdict == "pass"
    assert run(healthy(), cut_by_snaplen=2, fail_on="warning").verdict == "fail"
    assert run(healthy(), fail_on="warning").verdict == "pass"


def test_unexpected_flow_is_no_attempt_at_an_expected_group():
    j = run(healthy()[:2] + [M.flow(1, "udp", OTHER, 30005)])
    assert group(j, "mesh-30000").status == "missing"
    assert [f.rule for f in by_kind(j, "missing")] == ["MR-A2,MR-A3"]
    assert status(j, "MR-A3") == "missing"


def test_fail_on_changes_the_verdict():
    flows = healthy()[:2] + [M.flow(1, "udp", OTHER, 30005)]  # mesh-30000 missing, one unexpected
    # degraded (media quality) comes after unexpected and includes it; warning is strict
    assert [run(flows, fail_on=x).verdict for x in FAIL_ON] == ["pass", "fail", "fail", "fail", "fail", "pass"]
    assert run(healthy() + [M.unanswered(1, "udp", MEDIA, 30013)], fail_on="blocked").verdict == "fail"


def test_findings_are_numbered_errors_first():
    flows = [M.flow(1, "udp", OTHER, 30005), M.unanswered(2, "udp", MEDIA, 30012)] + healthy()[:2]
    j = run(flows)
    assert [(f.id, f.kind, f.severity) for f in j.findings] == [
        ("F1", "blocked", "error"), ("F2", "unexpected", "error")]


# -- a flow counts for every rule it satisfies (issue 8 section 2) ---------------------------------------

def test_flow_counts_for_every_rule_and_group_it_satisfies():
    # teams.cloud.microsoft matches *.cloud.microsoft (X-3b, mesh-service) and the Teams set ID 12 (M365-12,
    # teams-service) by name, and M365-12 by address too: only X-3b used to be credited, so teams-service was
    # "missing" in a healthy session
    prof = M.profile("mesh-2024-10")
    flows = [M.flow(1, server="52.113.194.132", sni="teams.cloud.microsoft", tls_version="TLS 1.3"),
             M.flow(2, "udp", "52.112.0.9", 3478)]
    j = run(flows, prof=prof)
    v = j.flows[0]
    # the primary rule is the most specific pattern (the exact name of ID 12 before *.cloud.microsoft)
    assert v.rule == "M365-12" and v.rules[0] == "M365-12" and "X-3b" in v.rules
    assert v.to_dict()["rules"] == list(v.rules)
    assert {g.id: g.status for g in j.groups} == {"mesh-service": "met", "teams-service": "met", "media-relay": "met"}
    assert status(j, "M365-12") == "ok" and status(j, "X-3b") == "ok"
    assert j.verdict == "pass"


def test_flow_blocked_under_its_primary_rule_blocks_every_rule_it_satisfies():
    prof = M.profile("mesh-2024-10")
    flows = [M.flow(1, server="52.113.194.132", sni="teams.cloud.microsoft", state="rejected", syn_count=3)]
    j = run(flows + [M.flow(2, "udp", "52.112.0.9", 3478)], prof=prof)
    assert group(j, "teams-service").status == "blocked" and group(j, "mesh-service").status == "blocked"
    (f,) = by_kind(j, "blocked")
    assert f.rule == "M365-12"  # one finding, under the primary rule (the most specific pattern)


# -- findings name their clients and times (issue 8 section 5) -------------------------------------------

def test_findings_carry_clients_and_first_last_failing_attempt():
    retries = [M.unanswered(i, "tcp", MEDIA, 30012, client_port=40000 + i, first_ns=T0 + i * S,
                            last_ns=T0 + i * S + S // 2, client="10.20.0.%d" % (10 + i % 2)) for i in range(1, 5)]
    evs = [M.dns("mesh.cloud.microsoft", "SERVFAIL", ns=T0 + 7 * S), M.dns("mesh.cloud.microsoft", "SERVFAIL",
                                                                           ns=T0 + 9 * S)]
    j = run(healthy() + retries, evs)
    f = next(f for f in by_kind(j, "blocked") if f.blocked_by == "no-answer")
    assert (f.clients, f.first_ns, f.last_ns) == (("10.20.0.10", "10.20.0.11"), T0 + S, T0 + 4 * S + S // 2)
    d = next(f for f in by_kind(j, "blocked") if f.blocked_by == "dns-failure")
    assert (d.clients, d.first_ns, d.last_ns) == ((M.CLIENT,), T0 + 7 * S, T0 + 9 * S)
    assert f.to_dict()["clients"] == ["10.20.0.10", "10.20.0.11"] and f.to_dict()["first_ns"] == T0 + S


# -- uncertainty is a field, not a string prefix (issue 10 item 3) ---------------------------------------

def test_dns_no_answer_near_the_end_is_uncertain_whatever_its_wording():
    from meshpcap.classify.findings import _dns_failures
    from meshpcap.classify.verdicts import judge_flow

    ctx = M.context()
    ft = M.table([], [M.dns("mesh.cloud.microsoft", None, ns=END - S), M.dns("mesh.cloud.microsoft", None, ns=T0)])
    late, early = _dns_failures(ft, ctx.matcher, ctx, [judge_flow(f, ctx) for f in ft.flows])
    assert late.uncertain and not early.uncertain
    assert _dns_failures(M.table([], [M.dns("a.office.com", "NXDOMAIN")]), ctx.matcher, ctx, [])[0].uncertain


# -- media ports come from the profile (issue 10 item 4) -----------------------------------------------

def test_media_ports_are_the_profiles():
    # single-room (the Teams rows) names UDP 3478-3481 only: 30000-30499 to an unknown address is unrelated there
    flows = [M.flow(1, "udp", OTHER, 30005), M.flow(2, "udp", OTHER, 3478)]
    single = run(flows, prof=M.profile("single-room"))
    assert [v.verdict for v in single.flows] == ["unrelated", "unexpected"]
    multi = run(flows)
    assert [v.verdict for v in multi.flows] == ["unexpected", "unexpected"]
    assert [v.matched_by for v in multi.flows] == ["media-port", "media-port"]


def test_media_ports_field_is_validated(tmp_path):
    from meshpcap.errors import RuleError
    from meshpcap.rules import load_profile

    base = '[profile]\nid = "p"\nsource = "s"\n'
    ok = tmp_path / "ok.toml"
    ok.write_text(base + 'media_ports = { udp = ["5000-5010", 6000] }\n')
    assert load_profile(ok).looks_like("udp", 5005) and not load_profile(ok).looks_like("tcp", 5005)
    for bad, msg in [('media_ports = { sctp = [1] }', "media_ports: sctp: unknown transport"),
                     ('media_ports = { udp = ["9-1"] }', "media_ports: udp"),
                     ('media_ports = [1, 2]', "media_ports")]:
        p = tmp_path / "bad.toml"
        p.write_text(base + bad + "\n")
        with pytest.raises(RuleError, match=msg):
            load_profile(p)
    # a profile without the field has no media ports: nothing "looks like" its traffic
    none = tmp_path / "none.toml"
    none.write_text(base)
    assert load_profile(none).media_ports == ()


def test_microsoft_issuers_are_data_with_a_source():
    from meshpcap.classify import verdicts

    assert verdicts.MICROSOFT_ISSUERS == ("microsoft", "digicert", "baltimore cybertrust")
    assert "Azure Certificate Authority details" in verdicts.MICROSOFT_ISSUERS_SOURCE
