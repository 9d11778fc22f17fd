"""Shipped profiles load; every validation error names file, rule and field (exact text)."""

from __future__ import annotations

import ipaddress
import textwrap
from datetime import date

import pytest

from meshpcap.errors import RuleError
from meshpcap.rules.load import (
    cloud_scripting_rule,
    default_profile,
    list_profiles,
    load_profile,
    load_rules_file,
    merge_profiles,
    profile_names,
    profiles_dir,
    webslate_rules,
)
from meshpcap.rules.model import PortSet


def test_shipped_profiles_load():
    assert profile_names() == ["mesh-2024-10", "multi-room", "single-room", "teams"]
    profiles = list_profiles()
    assert [p.id for p in profiles] == ["multi-room", "mesh-2024-10", "single-room", "teams"]
    assert default_profile().id == "multi-room"
    for p in profiles:
        assert p.path is not None and p.path.parent == profiles_dir()
        assert p.id == p.path.stem
        for rule in p.rules:
            assert rule.source.strip(), rule.id
        for group in p.expected:
            assert group.rules, group.id


def test_multi_room_profile():
    p = load_profile("multi-room")
    assert [r.id for r in p.rules] == [f"MR-D{i}" for i in range(1, 7)] + [f"MR-A{i}" for i in range(1, 6)]
    assert p.date == date(2024, 6, 12)
    a4 = p.rule("MR-A4")
    assert a4.service_tag == "AzureCloud" and a4.transports == {"udp"} and str(a4.ports) == "3478-3481"
    assert p.rule("MR-A1").expected is None and p.rule("MR-A1").requirement == "required"
    assert p.group("mesh-service").rules == ("MR-D1", "MR-D2", "MR-D3", "MR-D4", "MR-D5", "MR-D6", "MR-A5")
    relay = p.group("media-relay")
    assert relay.satisfied_by("MR-A4", "udp", 3479) == "primary"
    assert relay.satisfied_by("MR-A5", "tcp", 443) == "fallback"
    assert p.group("mesh-30000").rules == ("MR-A2", "MR-A3")
    assert p.rule("MR-D1").source == (
        'seed doc, table row "Required endpoints", column "Multi room event in the Mesh app": '
        '"All endpoints need to allow traffic on TCP ports 443"'
    )


def test_single_room_profile():
    p = load_profile("single-room")
    assert [r.id for r in p.rules] == [f"M365-{i}" for i in (11, 12, 16, 17, 18, 19, 27, 127, 180)]
    m12 = p.rule("M365-12")
    assert m12.ports_for("tcp") == PortSet.parse([80, 443]) and m12.ports_for("udp") == PortSet.parse(443)
    assert ipaddress.ip_network("2620:1ec:40::/42") in m12.cidrs
    assert {r.id for r in p.rules if r.requirement == "optional"} == {"M365-18", "M365-19"}
    assert p.group("teams-service").satisfied_by("M365-12", "tcp", 80) is None
    assert p.group("teams-service").satisfied_by("M365-12", "tcp", 443) == "primary"
    assert p.group("media-relay").satisfied_by("M365-12", "tcp", 443) == "fallback"


def test_mesh_2024_10_profile():
    p = load_profile("mesh-2024-10")
    x3 = p.rule("X-3")
    assert "*.cloud.microsoft.com" in x3.domains and "*.cloud.microsoft" in p.rule("X-3b").domains
    assert x3.ports == PortSet.parse([80, 443])
    assert p.rule("X-4a").service_tag == "AzureCloud" and str(p.rule("X-4a").ports) == "3478-3481"
    assert p.rule("X-4c").domains == ("*.skype.com", "*.microsoft.com", "*.azure.net", "*.azureedge.net")
    assert p.group("media-relay").satisfied_by("X-4b", "tcp", 443) == "fallback"
    assert p.rule("M365-11").event == "all"


def test_unknown_profile():
    with pytest.raises(RuleError) as exc:
        load_profile("triple-room")
    assert str(exc.value) == "profile 'triple-room': unknown profile; known profiles: mesh-2024-10, multi-room, single-room, teams"


def test_load_by_path(tmp_path):
    path = _write(tmp_path, RULE)
    assert load_profile(path).rules[0].id == "relay-udp"
    with pytest.raises(RuleError) as exc:
        load_profile(tmp_path / "missing.toml")
    assert str(exc.value) == f"{tmp_path / 'missing.toml'}: no such rule file"


HEAD = """
[profile]
id = "t"
source = "test"
"""
RULE = HEAD + """
[[rule]]
id = "relay-udp"
service_tag = "AzureCloud"
transport = "udp"
ports = ["3478-3481"]
source = "SPEC MR-A4"
"""


def _write(tmp_path, text, name="t.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path, text, require_profile=True):
    path = _write(tmp_path, text)
    with pytest.raises(RuleError) as exc:
        (load_profile if require_profile else load_rules_file)(path)
    return str(exc.value).replace(str(path), "F")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('ports = ["3478-3481"]', 'ports = ["3478-3481x"]', "F: rule 'relay-udp': ports: '3478-3481x' is not a port or range"),
        ('ports = ["3478-3481"]', "ports = [70000]", "F: rule 'relay-udp': ports: '70000' is outside 1-65535"),
        ('ports = ["3478-3481"]', 'ports = ["3481-3478"]', "F: rule 'relay-udp': ports: '3481-3478' has start > end"),
        ('ports = ["3478-3481"]', "", "F: rule 'relay-udp': ports: missing"),
        ('transport = "udp"', 'transport = "sctp"', "F: rule 'relay-udp': transport: 'sctp' is not tcp, udp or any"),
        ('transport = "udp"', "", "F: rule 'relay-udp': transport: missing"),
        ('transport = "udp"', 'tcp_ports = [443]',
         "F: rule 'relay-udp': ports: give either transport + ports or tcp_ports/udp_ports, not both"),
        ('source = "SPEC MR-A4"', "", "F: rule 'relay-udp': source: missing (every rule must cite its source)"),
        ('source = "SPEC MR-A4"', 'source = " "', "F: rule 'relay-udp': source: empty (every rule must cite its source)"),
        ('id = "relay-udp"', "", "F: rule '#1': id: missing"),
        ('id = "relay-udp"', 'id = "relay-udp"\nprots = [1]',
         "F: rule 'relay-udp': prots: unknown key (expected one of: id, description, domains, service_tag, cidrs, "
         "any_destination, transport, ports, tcp_ports, udp_ports, requirement, expected, event, source, endpoint_set)"),
        ('service_tag = "AzureCloud"', 'cidrs = ["10.0.0.1/8"]', "F: rule 'relay-udp': cidrs: '10.0.0.1/8' has host bits set"),
        ('service_tag = "AzureCloud"', 'cidrs = ["10.0.0/8"]', "F: rule 'relay-udp': cidrs: '10.0.0/8' is not a CIDR prefix"),
        ('service_tag = "AzureCloud"', 'cidrs = "10.0.0.0/8"', "F: rule 'relay-udp': cidrs: must be a list of strings"),
        ('service_tag = "AzureCloud"', 'domains = ["a.*.com"]',
         "F: rule 'relay-udp': domains: 'a.*.com' is not a domain pattern (only '*.suffix' or '*prefix.suffix')"),
        ('service_tag = "AzureCloud"', 'domains = ["bad_host!.com"]',
         "F: rule 'relay-udp': domains: 'bad_host!.com' is not a valid host name"),
        ('service_tag = "AzureCloud"', 'service_tag = "Azure Cloud"',
         "F: rule 'relay-udp': service_tag: 'Azure Cloud' is not a service tag name"),
        ('service_tag = "AzureCloud"', "",
         "F: rule 'relay-udp': nothing to match: give domains, service_tag or cidrs (or any_destination = true)"),
        ('service_tag = "AzureCloud"', 'service_tag = "AzureCloud"\nany_destination = true',
         "F: rule 'relay-udp': any_destination = true cannot be combined with domains, service_tag or cidrs"),
        ('source = "SPEC MR-A4"', 'source = "s"\nrequirement = "must"',
         "F: rule 'relay-udp': requirement: 'must' is not one of required, optional, conditional"),
        ('source = "SPEC MR-A4"', 'source = "s"\nexpected = "relay"',
         "F: rule 'relay-udp': expected: 'relay' is not a defined [[expected]] group"),
        ('id = "t"', 'id = "t"\nversion = 2', "F: profile: version: unknown key (expected one of: id, title, source, url, date, default, notes, valid_from, valid_from_source, superseded_on, superseded_by, superseded_source, retired_on, retired_by, retired_source, endpoints, media_ports)"),
        ('source = "test"', "", "F: profile: source: missing"),
        ('source = "test"', 'source = "t"\ndate = "June"', "F: profile: date: 'June' is not a date (YYYY-MM-DD)"),
        ('source = "test"', 'source = "t"\ndefault = "yes"', "F: profile: default: must be true or false"),
        ("[profile]", "[profil]", "F: profil: unknown key (expected one of: profile, rule, expected)"),
    ],
)
def test_validation_errors(tmp_path, old, new, message):
    assert old in RULE
    assert _error(tmp_path, RULE.replace(old, new, 1)) == message


def test_duplicate_rule_id(tmp_path):
    assert _error(tmp_path, RULE + RULE[len(HEAD):]) == "F: rule 'relay-udp': id: duplicate id"


def test_missing_profile_table(tmp_path):
    assert _error(tmp_path, RULE[len(HEAD):]) == "F: missing [profile] table"


def test_bad_toml(tmp_path):
    assert _error(tmp_path, "[profile\n").startswith("F: not valid TOML: ")


@pytest.mark.parametrize(
    "group, message",
    [
        ('id = "g"\nfallback = ["nope"]', "F: expected 'g': fallback: 'nope' is not a rule id"),
        ('id = "g"', "F: expected 'g': no rule has expected = 'g'"),
        ('description = "x"', "F: expected #1: id: missing"),
        ('id = "g"\nfallback = ["relay-udp"]\nfalback_ports = [443]',
         "F: expected 'g': falback_ports: unknown key (expected one of: id, description, transport, ports, fallback, "
         "fallback_transport, fallback_ports, fallback_description)"),
        ('id = "g"\nfallback = ["relay-udp"]\nfallback_ports = ["x"]', "F: expected 'g': fallback_ports: 'x' is not a port or range"),
        ('id = "g"\nfallback_ports = [443]\nports = [1]', "F: expected 'g': no rule has expected = 'g'"),
    ],
)
def test_group_errors(tmp_path, group, message):
    assert _error(tmp_path, RULE + "\n[[expected]]\n" + group + "\n") == message


def test_duplicate_group(tmp_path):
    text = RULE.replace('source = "SPEC MR-A4"', 'source = "s"\nexpected = "g"')
    text += '\n[[expected]]\nid = "g"\n\n[[expected]]\nid = "g"\n'
    assert _error(tmp_path, text) == "F: expected 'g': id: duplicate id"


def test_extra_rules_file_and_merge(tmp_path):
    base = load_profile("multi-room")
    extra = textwrap.dedent("""
        [[rule]]
        id = "direct-media"
        description = "optional direct media to Azure on high UDP ports"
        any_destination = true
        transport = "udp"
        ports = ["50000-59999"]
        requirement = "optional"
        source = "SPEC section 3, [3rd-party]"

        [[rule]]
        id = "relay-alt"
        cidrs = ["52.112.0.0/14"]
        transport = ["tcp", "udp"]
        ports = 3478
        expected = "media-relay"
        source = "test"
    """)
    path = _write(tmp_path, extra, "extra.toml")
    with pytest.raises(RuleError) as exc:
        load_rules_file(path)
    assert str(exc.value) == f"{path}: rule 'relay-alt': expected: 'media-relay' is not a defined [[expected]] group"
    rules = load_rules_file(path, base=base)
    assert rules.id == "extra" and rules.rules[0].any_destination
    assert rules.rules[1].transports == {"tcp", "udp"}
    merged = merge_profiles(base, rules)
    assert len(merged.rules) == len(base.rules) + 2
    assert merged.group("media-relay").rules == ("MR-A4", "relay-alt")
    clash = _write(tmp_path, 'id = "MR-D1"'.join(extra.split('id = "relay-alt"')), "clash.toml")
    with pytest.raises(RuleError) as exc:
        load_rules_file(clash, base=base)
    assert str(exc.value) == f"{clash}: rule 'MR-D1': id: duplicate id"


def test_webslate_rules():
    ws1, ws2 = webslate_rules(["https://www.example.com/page", "docs.example.org", "https://10.1.2.3:8443/x"],
                              ["*.login.example.com", "Example.NET"])
    assert ws1.id == "WS-1" and ws1.domains == ("www.example.com", "docs.example.org")
    assert ws1.cidrs == (ipaddress.ip_network("10.1.2.3/32"),)
    assert ws1.ports_for("tcp") == PortSet.parse([443, 8443]) and ws1.requirement == "conditional"
    assert ws2.id == "WS-2" and ws2.domains == ("*.login.example.com", "example.net")
    assert ws1.source.startswith('seed doc table "Scenarios with unique allowlisting requirements"')
    assert webslate_rules([]) == ()


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://www.example.com/", "--webslate: 'http://www.example.com/' is not an https URL (WebSlate navigation is HTTPS only)"),
        ("https://exa mple.com/", "--webslate: 'https://exa mple.com/' has no valid host name"),
        ("https://example.com:99999/", "--webslate: 'https://example.com:99999/' is not an https URL (WebSlate navigation is HTTPS only)"),
    ],
)
def test_webslate_errors(url, message):
    with pytest.raises(RuleError) as exc:
        webslate_rules([url])
    assert str(exc.value) == message


def test_webslate_allow_domain_error():
    with pytest.raises(RuleError) as exc:
        webslate_rules([], ["a.*.com"])
    assert str(exc.value) == "--webslate-allow: 'a.*.com' is not a domain pattern (only '*.suffix' or '*prefix.suffix')"


def test_cloud_scripting_rule():
    rule = cloud_scripting_rule("MyMeshApp")
    assert rule.id == "CS-1" and rule.domains == ("mymeshapp.azurewebsites.net",)
    assert rule.allows("tcp", 443) and not rule.allows("tcp", 80)
    assert cloud_scripting_rule("x.azurewebsites.net").domains == ("x.azurewebsites.net",)
    with pytest.raises(RuleError) as exc:
        cloud_scripting_rule("my.app")
    assert str(exc.value) == "--cloud-scripting: 'my.app' is not an App Service name (letters, digits, hyphens; 1-60)"


def test_profile_by_file_name():
    assert load_profile("single-room.toml").id == "single-room"
