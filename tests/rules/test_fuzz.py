"""Fuzz the rules-stage parsers: on hostile input only their own error type may escape."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

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


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), TEXT)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
KEYS = st.sampled_from(["id", "source", "domains", "cidrs", "service_tag", "transport", "ports", "tcp_ports",
                        "udp_ports", "requirement", "expected", "any_destination", "fallback", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=8), st.dictionaries(KEYS, VALUES, max_size=4))
def test_profile_data_only_ruleerror(rule, group):
    doc = {"profile": {"id": "f", "source": "s"}, "rule": [{"id": "r", "source": "s", **rule}], "expected": [group]}
    try:
        parse_profile_data({k: v for k, v in doc.items() if v is not None}, "fuzz.toml")
    except RuleError:
        pass
