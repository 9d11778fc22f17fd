"""Fuzz the rules-stage parsers: on hostile input only their own error type may escape."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.errors import RuleError
from meshpcap.rules.load import parse_profile_data
from meshpcap.rules.m365 import load_m365_endpoints
from meshpcap.rules.match import DomainMatcher, parse_domain_pattern, parse_prefix
from meshpcap.rules.model import PortSet
from meshpcap.rules.servicetags import parse_service_tags

TAGS = json.dumps({"changeNumber": 3, "cloud": "Public", "values": [
    {"name": "AzureCloud", "id": "AzureCloud", "properties": {"changeNumber": 1, "addressPrefixes": [
        "20.0.0.0/10", "2603:1063::/38"]}}]}, indent=2).encode()
ENDPOINTS = json.dumps([{"id": 12, "serviceArea": "Skype", "urls": ["*.lync.com"], "ips": ["52.112.0.0/14"],
                         "tcpPorts": "80,443", "udpPorts": "443", "category": "Allow", "required": True}]).encode()
TEXT = st.text(alphabet=st.sampled_from("0123456789abcdef.:/*-_% xAZ\u0663"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_parse_prefix_only_valueerror(text):
    try:
        parse_prefix(text)
    except ValueError:
        pass


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_domain_pattern_only_valueerror(text):
    try:
        parse_domain_pattern(text)
    except ValueError:
        return
    DomainMatcher([text]).match("a.b.c")


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, st.integers(), st.lists(st.one_of(TEXT, st.integers()), max_size=4)))
def test_portset_only_valueerror(value):
    try:
        PortSet.parse(value)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(TAGS)), st.binary(max_size=40))
def test_service_tags_truncated_plus_random(i, tail):
    try:
        parse_service_tags(TAGS[:i] + tail, "fuzz.json")
    except RuleError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=len(ENDPOINTS)), st.binary(max_size=40))
def test_m365_truncated_plus_random(i, tail):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "e.json"
        path.write_bytes(ENDPOINTS[:i] + tail)
        try:
            load_m365_endpoints(path)
        except RuleError:
            pass


# -- valid JSON, wrong shapes: every field of a valid document replaced by any JSON value ---------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False, allow_infinity=False),
              TEXT, st.sampled_from(["20.0.0.0/10", "2603:1063::/38", "443", "80,443", "3478-3481", "Skype", "AzureCloud"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(
        ["id", "name", "properties", "addressPrefixes", "changeNumber", "urls", "ips", "tcpPorts"]), inner, max_size=3)),
    max_leaves=6,
)


def _paths(doc, prefix=()):
    """Every place in a JSON document (as a key path) where a value sits."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _put(doc, path, value):
    if not path:
        return value
    import copy

    out = copy.deepcopy(doc)
    cur = out
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return out


TAGS_DOC = json.loads(TAGS)
TAG_PATHS = list(_paths(TAGS_DOC))
ENDPOINTS_DOC = json.loads(ENDPOINTS)
ENDPOINT_PATHS = list(_paths(ENDPOINTS_DOC))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TAG_PATHS), JSON)
def test_service_tags_wrong_shapes(path, value):
    doc = _put(TAGS_DOC, path, value)
    try:
        tags = parse_service_tags(json.dumps(doc).encode(), "fuzz.json")
    except RuleError as exc:
        assert str(exc).startswith("fuzz.json: ")
        return
    # accepted: what was accepted is what the index answers
    for name, prefixes in tags.tags.items():
        assert all(isinstance(p, str) for p in prefixes)
        tags.tag_index(name)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ENDPOINT_PATHS), JSON)
def test_m365_wrong_shapes(path, value):
    from meshpcap.rules.m365 import parse_m365_endpoints

    doc = _put(ENDPOINTS_DOC, path, value)
    try:
        records = parse_m365_endpoints(json.dumps(doc).encode(), "fuzz.json")
    except RuleError as exc:
        assert str(exc).startswith("fuzz.json: ")
        return
    for r in records:
        assert isinstance(r.id, int) and all(isinstance(u, str) for u in r.urls)
        assert isinstance(r.required, bool) and isinstance(r.express_route, bool)


# -- profiles: a valid profile with one or two fields changed, so the rule-field checks are reached -----

VALID_RULE = {"id": "r", "source": "s", "domains": ["*.example.com"], "transport": "tcp", "ports": [443],
              "requirement": "required", "expected": "g"}
VALID_GROUP = {"id": "g", "description": "d", "transport": "tcp", "ports": [443]}
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), TEXT,
                    st.sampled_from(["udp", "any", "optional", "conditional", "g", "AzureCloud", "3478-3481",
                                     "52.112.0.0/14", "*.office.com", "a.b.example"]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
RULE_KEYS = st.sampled_from(["id", "source", "domains", "cidrs", "service_tag", "transport", "ports", "tcp_ports",
                             "udp_ports", "requirement", "expected", "any_destination", "endpoint_set", "event", "x"])
GROUP_KEYS = st.sampled_from(["id", "transport", "ports", "fallback", "fallback_transport", "fallback_ports",
                              "description", "y"])
REACHED: dict[str, int] = {"parsed": 0, "rule field": 0, "group field": 0}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(RULE_KEYS, VALUES, max_size=2), st.dictionaries(GROUP_KEYS, VALUES, max_size=1))
def test_profile_data_only_ruleerror(rule_changes, group_changes):
    rule = {**VALID_RULE, **rule_changes}
    group = {**VALID_GROUP, **group_changes}
    rule = {k: v for k, v in rule.items() if v is not None}
    group = {k: v for k, v in group.items() if v is not None}
    doc = {"profile": {"id": "f", "source": "s"}, "rule": [rule], "expected": [group]}
    try:
        p = parse_profile_data(doc, "fuzz.toml")
    except RuleError as exc:
        text = str(exc)
        assert text.startswith("fuzz.toml: ")
        REACHED["rule field" if "rule '" in text or "rule #" in text else "group field"] += 1
        return
    REACHED["parsed"] += 1
    (r,) = p.rules
    assert r.id == rule["id"] and r.source == rule["source"] and r.port_map
    for _, ports in r.port_map:
        assert all(1 <= lo <= hi <= 65535 for lo, hi in ports.ranges)
    assert r.expected in (None, *[g.id for g in p.expected])


def test_profile_fuzzer_reaches_the_checks():
    """The fuzzer above is only worth something if it parses profiles and trips rule-field checks."""
    if sum(REACHED.values()) == 0:
        pytest.skip("run together with test_profile_data_only_ruleerror")
    assert REACHED["parsed"] >= 10 and REACHED["rule field"] >= 30, REACHED


def test_unchanged_profile_parses():
    p = parse_profile_data({"profile": {"id": "f", "source": "s"}, "rule": [VALID_RULE], "expected": [VALID_GROUP]},
                           "fuzz.toml")
    assert p.group("g").rules == ("r",)
