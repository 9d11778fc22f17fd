"""RuleMatcher: a profile's rules found by host name and by address (CIDRs and service tags)."""

from __future__ import annotations

import json

from meshpcap.rules.load import load_profile
from meshpcap.rules.match import RuleMatcher
from meshpcap.rules.servicetags import load_service_tags


def test_rule_matcher(tmp_path):
    doc = {"changeNumber": 1, "cloud": "Public", "values": [
        {"name": "AzureCloud", "id": "AzureCloud", "properties": {"addressPrefixes": ["52.112.0.0/15", "2603:1063::/40"]}}]}
    path = tmp_path / "ServiceTags_Public_20251028.json"
    path.write_text(json.dumps(doc))
    tags = load_service_tags(path)
    mesh = load_profile("mesh-2024-10")
    matcher = RuleMatcher(mesh.rules, tags)
    # M365-50/78 (*.microsoft.com) and 184 (*.cloud.microsoft) are the M365 Common rows the doc points at;
    # the most specific pattern comes first (the exact teams.microsoft.com of M365-12 before *.microsoft.com)
    assert [r.id for r in matcher.by_name("teams.microsoft.com")] == ["M365-12", "X-3", "X-4c", "M365-50", "M365-78"]
    assert [r.id for r in matcher.by_name("x.substrate.office.com")] == ["X-3", "M365-147"]
    assert [r.id for r in matcher.by_name("foo.cloud.microsoft.com")] == ["X-3", "X-4c", "M365-50", "M365-78"]
    assert [r.id for r in matcher.by_name("foo.cloud.microsoft")] == ["X-3b", "M365-184"]
    assert [r.id for r in matcher.by_address("52.113.0.9")] == ["X-4a", "X-4b", "M365-11", "M365-12"]
    assert [r.id for r in matcher.by_address("52.114.0.9")] == ["M365-11", "M365-12"]
    assert [r.id for r in matcher.by_address("2603:1063::5")] == ["X-4a", "X-4b", "M365-11", "M365-12"]
    assert matcher.by_address("8.8.8.8") == [] and matcher.unresolved_tags == ()
    # answers are remembered per address (a capture has many flows to few servers); each caller gets its own list
    first = matcher.by_address("52.113.0.9")
    first.clear()
    assert [r.id for r in matcher.by_address("52.113.0.9")] == ["X-4a", "X-4b", "M365-11", "M365-12"]
    assert matcher.by_address_many(["52.113.0.9", "8.8.8.8"]) == [matcher.by_address("52.113.0.9"), []]
    bare = RuleMatcher(load_profile("multi-room").rules)
    assert bare.unresolved_tags == ("AzureCloud",) and bare.by_address("52.113.0.9") == []


def test_by_name_most_specific_first():
    from meshpcap.rules.model import PortSet, Rule

    def rule(rid, *domains):
        return Rule(id=rid, description="", domains=domains, service_tag=None, cidrs=(),
                    port_map=(("tcp", PortSet.parse(443)),), requirement="required", expected=None, event="", source="s")

    m = RuleMatcher([rule("wide", "*.com"), rule("mid", "*.example.com"), rule("cdn", "*cdn.example.com"),
                     rule("exact", "a.cdn.example.com", "zcdn.example.com"), rule("mid2", "*.example.com")])
    assert [r.id for r in m.by_name("a.cdn.example.com")] == ["exact", "mid", "mid2", "wide"]
    assert [r.id for r in m.by_name("zcdn.example.com")] == ["exact", "cdn", "mid", "mid2", "wide"]
    assert [r.id for r in m.by_name("xcdn.example.com")] == ["cdn", "mid", "mid2", "wide"]
    assert [r.id for r in m.by_name("b.example.com")] == ["mid", "mid2", "wide"]


def test_by_address_agrees_with_by_address_many(shared_spec):
    import ipaddress
    import random as _random

    tags = load_service_tags(shared_spec / "ServiceTags_Public_20251028.json")

    for name in ("multi-room", "mesh-2024-10", "teams"):
        matcher = RuleMatcher(load_profile(name).rules, tags)
        rng = _random.Random(len(name))
        nets = [ipaddress.ip_network(p) for p in tags.tags["AzureCloud"][::300]]
        addresses = [str(n.network_address + rng.randrange(n.num_addresses)) for n in nets]
        addresses += ["52.113.194.132", "13.107.64.1", "8.8.8.8", "2603:1063::1", "20.202.0.1"]
        many = matcher.by_address_many(addresses)
        assert [matcher.by_address(a) for a in addresses] == many
        assert any(many) and not all(many)
