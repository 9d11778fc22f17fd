"""A slow, obviously correct reference for the domain-pattern semantics of :mod:`meshpcap.rules.match`,
for tests to hold :class:`~meshpcap.rules.match.DomainMatcher` (or any other matcher) to."""

from __future__ import annotations

from meshpcap.rules.match import parse_domain_pattern

__all__ = ["domain_matches"]


def domain_matches(pattern: str, name: str) -> bool:
    """Whether host ``name`` matches ``pattern``: ``x.com`` exactly; ``*.x.com`` any name below ``x.com``
    (not ``x.com`` itself); ``*cdn.x.com`` (Microsoft's prefix form) one label ending in ``cdn`` before
    ``x.com``.  Names are compared lower-cased, surrounding spaces and a trailing dot removed."""
    kind, suffix, head = parse_domain_pattern(pattern)
    name = name.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if kind == "exact":
        return name == suffix
    if kind == "subdomain":
        return name.endswith("." + suffix) and len(name) > len(suffix) + 1
    first, _, rest = name.partition(".")
    return rest == suffix and first.endswith(head)
