"""Host names from the wire are hostile: validate and normalise them before use.

A name is kept only when it is a syntactically valid DNS host name (RFC 1035 section
2.3.4 limits, RFC 1123 section 2.1 label syntax, relaxed to allow ``_`` as real DNS
data does).  It is lower-cased and its trailing dot removed.  Anything else is
rejected and the caller counts it.
"""

from __future__ import annotations

import re

MAX_NAME = 253  # RFC 1035 section 2.3.4: 255 octets on the wire, 253 as text
MAX_LABEL = 63

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")

# The common case in one C call: valid labels of either case (the label rule above, with the
# last character checked by a look-behind) joined by single dots, at most one trailing dot.
# A label holds no "." so each one is matched whole and nothing backtracks into it.
_PLAIN = r"(?>{0}\.)*{0}\.?".format(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}(?<!-)")
_PLAIN_TEXT = re.compile(_PLAIN).fullmatch
_PLAIN_BYTES = re.compile(_PLAIN.encode("ascii")).fullmatch


def normalize_hostname(raw: str | bytes | None) -> str | None:
    """Return the normalised host name, or ``None`` when ``raw`` is not a valid one."""
    # Fast path: a plain ASCII name of valid labels, at most 253 characters without its
    # trailing dot, only needs lower-casing; :func:`_normalize_careful` does the rest.
    if type(raw) is bytes:
        if len(raw) <= MAX_NAME + 1 and _PLAIN_BYTES(raw) is not None:
            if raw[-1] == 0x2E:  # "."
                return raw[:-1].decode("ascii").lower()
            if len(raw) <= MAX_NAME:
                return raw.decode("ascii").lower()
    elif type(raw) is str:
        if len(raw) <= MAX_NAME + 1 and _PLAIN_TEXT(raw) is not None:
            if raw[-1] == ".":
                return raw[:-1].lower()
            if len(raw) <= MAX_NAME:
                return raw.lower()
    elif raw is None:
        return None
    return _normalize_careful(raw)


def _normalize_careful(raw: str | bytes) -> str | None:
    """Every rule, step by step: decode, strip, lower-case, then check the length and each label."""
    if isinstance(raw, (bytes, bytearray, memoryview)):
        try:
            raw = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            return None
    name = raw.strip().lower() if raw.isprintable() else None
    if not name:
        return None
    if name.endswith("."):
        name = name[:-1]
    if not name or len(name) > MAX_NAME:
        return None
    labels = name.split(".")
    for label in labels:
        if not label or len(label) > MAX_LABEL or not _LABEL.match(label):
            return None
    return name


def is_ip_literal(name: str) -> bool:
    """True when ``name`` is an IPv4 or IPv6 address literal rather than a host name."""
    import ipaddress

    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False
