"""PortSet parsing, membership and display; Rule and ExpectedGroup helpers."""

from __future__ import annotations

import numpy as np
import pytest

from meshpcap.rules.model import ExpectedGroup, PortSet, Rule


@pytest.mark.parametrize(
    "value, ranges, text",
    [
        (443, ((443, 443),), "443"),
        ("30000-30499", ((30000, 30499),), "30000-30499"),
        ([443, 80], ((80, 80), (443, 443)), "443, 80"),
        ("80,443", ((80, 80), (443, 443)), "80, 443"),
        (["3478-3481", 3480, 3482], ((3478, 3482),), "3478-3481, 3480, 3482"),
        ("3478,3479,3480,3481", ((3478, 3481),), "3478, 3479, 3480, 3481"),
        (["1-65535"], ((1, 65535),), "1-65535"),
    ],
)
def test_portset_parse(value, ranges, text):
    ports = PortSet.parse(value)
    assert ports.ranges == ranges
    assert str(ports) == text


@pytest.mark.parametrize(
    "value, message",
    [
        ("3478-3481x", "'3478-3481x' is not a port or range"),
        ("", "'' is not a port or range"),
        ("1-2-3", "'1-2-3' is not a port or range"),
        (0, "'0' is outside 1-65535"),
        (70000, "'70000' is outside 1-65535"),
        ("3481-3478", "'3481-3478' has start > end"),
        (True, "True is not a port or range"),
        (4.5, "4.5 is not a port or range"),
        ([], "no ports given"),
        ("٣٤", "'٣٤' is not a port or range"),
    ],
)
def test_portset_errors(value, message):
    with pytest.raises(ValueError) as exc:
        PortSet.parse(value)
    assert str(exc.value) == message


def test_portset_membership_and_equality():
    ports = PortSet.parse(["30000-30499", 443])
    assert 443 in ports and 30000 in ports and 30499 in ports
    assert 444 not in ports and 29999 not in ports and 30500 not in ports
    assert "443" not in ports
    assert np.int64(443) in ports
    assert ports.contains_many(np.array([442, 443, 30200, 40000])).tolist() == [False, True, True, False]
    assert PortSet.parse([443, 80]) == PortSet.parse("80,443")  # display order does not count
    assert len(PortSet.parse("3478-3481")) == 4
    assert str(PortSet.parse(80) | PortSet.parse(443)) == "80, 443"
    assert PortSet.all().ranges == ((1, 65535),)


def _rule(**changes):
    fields = dict(
        id="R", description="", domains=("x.com",), service_tag=None, cidrs=(),
        port_map=(("tcp", PortSet.parse([443, 80])), ("udp", PortSet.parse(443))),
        requirement="required", expected=None, event="SR", source="test",
    )
    fields.update(changes)
    return Rule(**fields)


def test_rule_ports_per_transport():
    rule = _rule()
    assert rule.transports == frozenset({"tcp", "udp"})
    assert rule.allows("tcp", 80) and rule.allows("udp", 443)
    assert not rule.allows("udp", 80)
    assert rule.ports_for("udp") == PortSet.parse(443)
    assert rule.ports == PortSet.parse([80, 443])
    assert rule.ports_text() == "TCP 443, 80; UDP 443"


def test_expected_group_satisfied_by():
    group = ExpectedGroup(
        id="media-relay", description="", rules=("A4",), fallback=("A5",),
        fallback_transports=frozenset({"tcp"}), fallback_ports=PortSet.parse(443),
    )
    assert group.satisfied_by("A4", "udp", 3478) == "primary"
    assert group.satisfied_by("A5", "tcp", 443) == "fallback"
    assert group.satisfied_by("A5", "tcp", 80) is None
    assert group.satisfied_by("A5", "udp", 443) is None
    assert group.satisfied_by("X", "udp", 3478) is None
