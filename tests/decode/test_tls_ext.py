"""The compiled ClientHello walk (meshpcap/decode/_tls.c) against the Python walk it shortcuts.

Every input is parsed twice by ``tls.parse_client_hello``: with the compiled walk and without it.  Both
must give the same ClientHello, or raise the same error with the same message.  The inputs are built hellos
(GREASE, ECH, padding, a post-quantum key share, no SNI, an invalid or IP-literal SNI, TLS 1.2 without
supported_versions, no extensions) and the same cut, overwritten and lengthened anywhere; the compiled walk
must take every well-formed one itself, and decline what it does not read (the Python walk decides it)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode import tls
from meshpcap.testing.tls import build_client_hello
from tests.decode.twins import both_ways

try:  # also when MESHPCAP_PURE_PYTHON is set: the comparison needs the module itself
    from meshpcap.decode import _tls as COMPILED
except ImportError:
    COMPILED = None
needs_ext = pytest.mark.skipif(COMPILED is None, reason="the compiled ClientHello walk is not built (no C compiler?)")

HELLOS = [
    build_client_hello("teams.microsoft.com", alpn=("h2", "http/1.1"), record=False),
    build_client_hello("Teams.Microsoft.COM.", alpn=("h2",), grease=True, ech=True, record=False),
    build_client_hello("mesh.cloud.microsoft", pq_key_share=True, padding_to=2000, grease=True, record=False),
    build_client_hello(None, record=False),
    build_client_hello(b"bad name!", record=False),
    build_client_hello("52.112.0.1", record=False),
    build_client_hello(b"[2603:1063::1]", record=False),
    build_client_hello("old.example", versions=(0x0303,), record=False),
    build_client_hello("older.example", versions=(0x0301,), record=False),
    build_client_hello("quic.example", alpn=("h3",), quic_transport_parameters=b"\x01\x02\x03", record=False),
]


def _without_extensions(msg: bytes) -> bytes:
    """The hello ``msg`` with its extensions block removed (RFC 5246 section 7.4.1.2 allows that)."""
    body = msg[4:]
    pos = 2 + 32
    pos += 1 + body[pos]
    pos += 2 + struct.unpack_from("!H", body, pos)[0]
    pos += 1 + body[pos]
    body = body[:pos]
    return bytes([1]) + len(body).to_bytes(3, "big") + body


HELLOS.append(_without_extensions(HELLOS[0]))


def _both(msg: bytes) -> tuple:
    """(what parse_client_hello gives or raises with the compiled walk, without it)."""
    return both_ways(tls, COMPILED, tls.parse_client_hello, msg)


@needs_ext
@pytest.mark.parametrize("msg", HELLOS, ids=range(len(HELLOS)))
def test_well_formed_hellos_are_read_alike_by_the_compiled_walk(msg):
    end = 4 + int.from_bytes(msg[1:4], "big")
    assert COMPILED.client_hello_fields(msg, 4, end) is not None, "a well-formed hello was left to the Python walk"
    fast, slow = _both(msg)
    assert fast == slow and fast[0] == "ok"
    assert [type(x) for x in fast[1].cipher_suites + fast[1].extensions + fast[1].versions] == [
        type(x) for x in slow[1].cipher_suites + slow[1].extensions + slow[1].versions]


@needs_ext
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=st.sampled_from(HELLOS), data=st.data())
def test_damaged_hellos_get_the_same_result_or_error(msg, data):
    """Cut, overwritten or lengthened anywhere (the handshake length kept or made to fit): the compiled walk
    gives the Python walk's ClientHello or declines, so the error is the Python walk's."""
    raw = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["set", "set", "cut", "insert"]))
        at = data.draw(st.integers(4, len(raw)))
        if how == "set" and at < len(raw):
            raw[at] = data.draw(st.sampled_from([0, 1, 2, 0x0A, 0x10, 0x2B, 0xFE, 0xFF, data.draw(st.integers(0, 255))]))
        elif how == "cut":
            del raw[at:at + data.draw(st.integers(1, 40))]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    if data.draw(st.booleans()):  # the header's length made to fit, so that the damage is inside the message
        raw[1:4] = (len(raw) - 4).to_bytes(3, "big")
    fast, slow = _both(bytes(raw))
    assert fast == slow


@needs_ext
def test_what_the_compiled_walk_declines():
    """An SNI list whose first entry is not a host_name, an empty ALPN name, a duplicate extension, an odd
    supported_versions: declined (None), and parse_client_hello still gives the Python walk's answer."""
    hello = HELLOS[0]
    end = 4 + int.from_bytes(hello[1:4], "big")
    fields = COMPILED.client_hello_fields(hello, 4, end)
    assert fields[0] == 0x0303 and fields[3] == b"teams.microsoft.com" and fields[4] == (b"h2", b"http/1.1")

    def with_extension(ext_type: int, body: bytes) -> bytes:
        """HELLOS[0] with one more extension at the end (lengths fixed up)."""
        msg = bytearray(hello)
        ext = struct.pack("!HH", ext_type, len(body)) + body
        head = 4 + 2 + 32
        head += 1 + msg[head]
        head += 2 + struct.unpack_from("!H", msg, head)[0]
        head += 1 + msg[head]
        total = struct.unpack_from("!H", msg, head)[0] + len(ext)
        msg[head:head + 2] = struct.pack("!H", total)
        msg += ext
        msg[1:4] = (len(msg) - 4).to_bytes(3, "big")
        return bytes(msg)

    for msg in (with_extension(0x0A0A, b""), with_extension(0xFAFA, b"\x00")):  # GREASE types: accepted, not listed
        got = COMPILED.client_hello_fields(msg, 4, len(msg))
        assert got is not None and 0x0A0A not in got[2] and 0xFAFA not in got[2]
        fast, slow = _both(msg)
        assert fast == slow
    for msg in (
        _replace_ext(hello, tls.EXT_SERVER_NAME, b"\x00\x08\x01\x00\x05abcde"),  # first entry not a host_name
        _replace_ext(hello, tls.EXT_ALPN, b"\x00\x04\x02h2\x00"),  # an empty protocol name
        _replace_ext(hello, tls.EXT_SUPPORTED_VERSIONS, b"\x03\x03\x04\x03"),  # an odd versions length
        _replace_ext(hello, tls.EXT_SERVER_NAME, b"\x00\x03\x00\x00\x05abcde"),  # a name past the list's end
        with_extension(tls.EXT_EXTENDED_MASTER_SECRET, b""),  # a second extended_master_secret: a duplicate
        _longer_session_id(hello),  # 33 bytes of session id
        hello[:1] + (len(hello) - 4 + 4).to_bytes(3, "big") + hello[4:] + b"\x44\x44\x00\x00",  # after the block
    ):
        assert COMPILED.client_hello_fields(msg, 4, len(msg)) is None
        fast, slow = _both(msg)
        assert fast == slow
    assert COMPILED.client_hello_fields(hello, 4, len(hello) + 1) is None  # beyond the buffer: declined
    assert COMPILED.client_hello_fields(hello, -1, 10) is None


def _replace_ext(msg: bytes, ext_type: int, body: bytes) -> bytes:
    """``msg`` with the body of its extension ``ext_type`` replaced (lengths fixed up)."""
    raw = bytearray(msg)
    head = 4 + 2 + 32
    head += 1 + raw[head]
    head += 2 + struct.unpack_from("!H", raw, head)[0]
    head += 1 + raw[head]
    pos = head + 2
    while True:
        t, n = struct.unpack_from("!HH", raw, pos)
        if t == ext_type:
            raw[pos:pos + 4 + n] = struct.pack("!HH", t, len(body)) + body
            break
        pos += 4 + n
    total = len(raw) - head - 2
    raw[head:head + 2] = struct.pack("!H", total)
    raw[1:4] = (len(raw) - 4).to_bytes(3, "big")
    return bytes(raw)


def _longer_session_id(msg: bytes) -> bytes:
    """``msg`` with one more byte of legacy_session_id (33: RFC 8446 section 4.1.2 allows 32)."""
    at = 4 + 2 + 32
    n = msg[at]
    raw = msg[:at] + bytes([n + 1]) + msg[at + 1:at + 1 + n] + b"\x00" + msg[at + 1 + n:]
    return raw[:1] + (len(raw) - 4).to_bytes(3, "big") + raw[4:]


# ---------------------------------------------------------------- the server's flight

from meshpcap.testing.tls import (  # noqa: E402
    build_alert,
    build_application_data,
    build_certificate_record,
    build_change_cipher_spec,
    build_server_hello,
)

def _sh(exts: bytes, sid: bytes = bytes(32), more: bytes = b"") -> bytes:
    """A ServerHello record of these extensions (``more``: further handshake messages in the same record)."""
    body = b"\x03\x03" + bytes(range(32)) + bytes([len(sid)]) + sid + b"\x13\x01\x00"
    body += len(exts).to_bytes(2, "big") + exts
    msg = b"\x02" + len(body).to_bytes(3, "big") + body + more
    return b"\x16\x03\x03" + len(msg).to_bytes(2, "big") + msg


def _ext(t: int, body: bytes) -> bytes:
    return t.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


_SH13 = build_server_hello(0x0304)
_CCS = build_change_cipher_spec()
FLIGHTS_TAKEN = [
    _sh(_ext(tls.EXT_SUPPORTED_VERSIONS, b"\x03\x04\x03\x04")) + _CCS,  # not one version: legacy_version stands
    _sh(_ext(tls.EXT_ALPN, b"\x00\x03\x02h2") + _ext(tls.EXT_ALPN, b"\x00\x00")) + _CCS,  # an empty list after h2
    _sh(b"", sid=b"") + _CCS,  # the usual starts: the compiled walk reads them itself
    _SH13 + build_change_cipher_spec() + build_application_data(40),
    _SH13 + build_application_data(300),
    build_server_hello(0x0304, 0x1302, alpn="h2") + build_change_cipher_spec(),
    _SH13,  # the stream ends after the ServerHello
    _SH13 + build_change_cipher_spec()[:3],  # a record header cut
    build_server_hello(0x0303, alpn="http/1.1") + build_change_cipher_spec(),  # TLS 1.2 resumed: no certificate
]
FLIGHTS_LEFT = [  # left to the Python walk
    _sh(b"", sid=bytes(33)) + _CCS,  # a session id longer than 32 bytes
    _sh(_ext(tls.EXT_ALPN, b"\x00\x04\x00\x02h2")) + _CCS,  # an empty protocol name
    _sh(b"", more=build_certificate_record(bytes(40), record=False)) + _CCS,  # a second message in the record
    build_server_hello(0x0304, hello_retry=True) + build_change_cipher_spec() + _SH13,
    build_server_hello(0x0303) + build_certificate_record(bytes(40)) + build_alert(2, 40),
    _SH13 + build_alert(1, 0),
    _SH13[:-3],  # the ServerHello cut
    build_alert(2, 40),
    b"\x17\x03\x03\x00\x05hello",
    _SH13 + b"\x14\x02\x03\x00\x01\x01",  # a record version that is not 3.x after the hello
]


def _flights(stream: bytes) -> tuple:
    return both_ways(tls, COMPILED, tls.read_server_flight, stream)


@needs_ext
@pytest.mark.parametrize("stream", FLIGHTS_TAKEN + FLIGHTS_LEFT, ids=range(len(FLIGHTS_TAKEN + FLIGHTS_LEFT)))
def test_server_flights_are_read_alike(stream):
    taken = COMPILED.server_flight_fields(stream) is not None
    assert taken == (stream in FLIGHTS_TAKEN)
    fast, slow = _flights(stream)
    assert fast == slow


@needs_ext
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=st.sampled_from(FLIGHTS_TAKEN + FLIGHTS_LEFT), data=st.data())
def test_damaged_server_flights_read_alike(stream, data):
    """Overwritten, cut or lengthened anywhere (record and message lengths made to fit or not): the compiled
    walk gives the Python walk's ServerFlight or declines, so the error is the Python walk's."""
    raw = bytearray(stream)
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["set", "set", "cut", "insert"]))
        at = data.draw(st.integers(0, len(raw)))
        if how == "set" and at < len(raw):
            raw[at] = data.draw(st.sampled_from([0, 1, 2, 3, 4, 0x10, 0x14, 0x16, 0x17, 0x20, 0x2B, 0xFF,
                                                 data.draw(st.integers(0, 255))]))
        elif how == "cut":
            del raw[at:at + data.draw(st.integers(1, 40))]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    if len(raw) >= 9 and data.draw(st.booleans()):  # the first record and message made to fit what is there
        n = min(len(raw) - 5, (raw[3] << 8) | raw[4])
        raw[3:5] = n.to_bytes(2, "big")
        raw[6:9] = max(n - 4, 0).to_bytes(3, "big")
    fast, slow = _flights(bytes(raw))
    assert fast == slow
