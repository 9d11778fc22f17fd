"""Hypothesis fuzzing of the TLS and QUIC parsers: only DecodeError (or NeedMore) may escape."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpcap.decode.buffer import DecodeError
from meshpcap.decode.quic import (
    QUIC_V1,
    QUIC_V2,
    client_hello_from_initials,
    parse_client_initials,
)
from meshpcap.decode.tls import (
    ClientHello,
    ServerFlight,
    looks_like_tls,
    parse_client_hello,
    read_alerts,
    read_client_hello,
    read_server_flight,
)
from meshpcap.testing.quic import (
    crypto_frame,
    encrypt_client_initial,
)
from meshpcap.testing.tls import (
    build_alert,
    build_certificate_record,
    build_change_cipher_spec,
    build_client_hello,
    build_server_hello,
)
from tests.decode.test_tls import self_signed_der

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@lru_cache(maxsize=1)
def _cert() -> bytes:
    return self_signed_der("fuzz.example")


HELLO_RECORDS = build_client_hello("fuzz.example", alpn=("h2", "http/1.1"), grease=True, ech=True, max_fragment=400)
HELLO_MSG = build_client_hello("fuzz.example", alpn=("h3",), record=False)
SERVER_STREAMS = (
    build_server_hello(0x0304, hello_retry=True) + build_change_cipher_spec() + build_server_hello(0x0304),
    build_server_hello(0x0303, alpn="h2") + build_certificate_record(_cert()) + build_alert(2, 40),
)
DCID = bytes.fromhex("0102030405060708")
INITIALS = (
    encrypt_client_initial(QUIC_V1, DCID, b"\x0a\x0b", 0, crypto_frame(0, HELLO_MSG), pad_to=None),
    encrypt_client_initial(QUIC_V2, DCID, b"", 1, b"\x01" + crypto_frame(0, HELLO_MSG)),
)


def _mutate(valid: bytes, cut: int, tail: bytes) -> bytes:
    return valid[: cut % (len(valid) + 1)] + tail


@FUZZ
@given(cut=st.integers(min_value=0), tail=st.binary(max_size=64))
def test_fuzz_read_client_hello(cut, tail):
    try:
        result = read_client_hello(_mutate(HELLO_RECORDS, cut, tail))
    except DecodeError:
        return
    assert result is None or isinstance(result, ClientHello)


@FUZZ
@given(data=st.binary(max_size=200))
def test_fuzz_read_client_hello_random(data):
    try:
        read_client_hello(b"\x16\x03\x01" + data)
    except DecodeError:
        pass
    looks_like_tls(data)


@FUZZ
@given(cut=st.integers(min_value=0), tail=st.binary(max_size=64), flip=st.integers(min_value=0), bit=st.integers(0, 7))
def test_fuzz_parse_client_hello(cut, tail, flip, bit):
    msg = bytearray(HELLO_MSG)
    msg[flip % len(msg)] ^= 1 << bit
    for data in (bytes(msg), _mutate(HELLO_MSG, cut, tail)):
        try:
            assert isinstance(parse_client_hello(data), ClientHello)
        except DecodeError:
            pass


@FUZZ
@given(which=st.integers(0, 1), cut=st.integers(min_value=0), tail=st.binary(max_size=64))
def test_fuzz_read_server_flight(which, cut, tail):
    stream = _mutate(SERVER_STREAMS[which], cut, tail)
    try:
        assert isinstance(read_server_flight(stream), ServerFlight)
    except DecodeError:
        # allowed only when the first record is not TLS
        assert cut % (len(SERVER_STREAMS[which]) + 1) < 5
    read_alerts(stream)  # never raises


@FUZZ
@given(which=st.integers(0, 1), flip=st.integers(min_value=0), bit=st.integers(0, 7))
def test_fuzz_server_flight_never_raises_after_first_record(which, flip, bit):
    stream = bytearray(SERVER_STREAMS[which])
    pos = 5 + flip % (len(stream) - 5)
    stream[pos] ^= 1 << bit
    assert isinstance(read_server_flight(bytes(stream)), ServerFlight)
    read_alerts(bytes(stream))


@FUZZ
@given(which=st.integers(0, 1), cut=st.integers(min_value=0), tail=st.binary(max_size=64), flip=st.integers(min_value=0))
def test_fuzz_parse_client_initials(which, cut, tail, flip):
    valid = INITIALS[which]
    flipped = bytearray(valid)
    flipped[flip % len(valid)] ^= 0x01
    for data in (_mutate(valid, cut, tail), bytes(flipped)):
        try:
            assert isinstance(parse_client_initials(data), list)
            client_hello_from_initials([data])
        except DecodeError:
            pass


@FUZZ
@given(data=st.binary(max_size=120))
def test_fuzz_parse_client_initials_random(data):
    for prefix in (b"\xc0\x00\x00\x00\x01", b"\xd0\x6b\x33\x43\xcf", b""):
        try:
            parse_client_initials(prefix + data)
        except DecodeError:
            pass
