"""Tests for meshpcap.decode.tls."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshpcap.decode.buffer import DecodeError, NeedMore
from meshpcap.decode.tls import (
    ALERT_NAMES,
    CT_HANDSHAKE,
    EXT_ECH,
    TLS_VERSION_NAMES,
    is_grease,
    looks_like_tls,
    parse_client_hello,
    read_alerts,
    read_client_hello,
    read_server_flight,
)
from meshpcap.testing.tls import (
    build_alert,
    build_application_data,
    build_certificate_record,
    build_change_cipher_spec,
    build_client_hello,
    build_handshake,
    build_record,
    build_server_hello,
)


def self_signed_der(cn: str = "teams.microsoft.com") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test Org")])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1234)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def cert_der() -> bytes:
    return self_signed_der()


# ---------------------------------------------------------------- ClientHello


def test_client_hello_fields():
    rec = build_client_hello("Teams.Microsoft.com.", alpn=("h2", "http/1.1"))
    hello = read_client_hello(rec)
    assert hello is not None
    assert hello.sni == "teams.microsoft.com"
    assert not hello.sni_raw_invalid
    assert hello.alpn == ("h2", "http/1.1")
    assert hello.versions == (0x0304, 0x0303)
    assert hello.legacy_version == 0x0303
    assert not hello.ech
    assert 0x1301 in hello.cipher_suites
    assert hello.extensions[0] == 0
    assert hello.length == len(rec) - 5


def test_parse_client_hello_from_handshake_message():
    msg = build_client_hello("a.example", record=False)
    assert parse_client_hello(msg).sni == "a.example"
    with pytest.raises(NeedMore):
        parse_client_hello(msg[:-1])
    with pytest.raises(DecodeError):
        parse_client_hello(b"\x02" + msg[1:])


def test_tls12_hello_without_supported_versions():
    hello = read_client_hello(build_client_hello("x.example", versions=(0x0303,)))
    assert hello.versions == (0x0303,)


def test_hello_without_extensions():
    # RFC 5246 section 7.4.1.2: extensions may be absent
    body = bytes.fromhex("0303") + bytes(32) + b"\x00" + bytes.fromhex("0002c02f") + b"\x01\x00"
    hello = read_client_hello(build_record(CT_HANDSHAKE, build_handshake(1, body), version=0x0301))
    assert hello.sni is None and hello.extensions == () and hello.versions == (0x0303,)


def test_grease_stripped():
    hello = read_client_hello(build_client_hello("g.example", alpn=("h2",), grease=True))
    assert not any(is_grease(v) for v in hello.versions)
    assert not any(is_grease(v) for v in hello.cipher_suites)
    assert not any(is_grease(v) for v in hello.extensions)
    assert hello.alpn == ("h2",)
    assert hello.versions == (0x0304, 0x0303)


def test_is_grease():
    assert all(is_grease(v) for v in range(0x0A0A, 0x10000, 0x1010))
    assert not is_grease(0x0A1A) and not is_grease(0x1301) and not is_grease(0x0B0B)


def test_ech_flagged_and_outer_sni():
    hello = read_client_hello(build_client_hello("public.example.com", ech=True))
    assert hello.ech and EXT_ECH in hello.extensions
    assert hello.sni == "public.example.com"


@pytest.mark.parametrize("raw", [b"bad name!", b"-x.example", b"a..b", b"\xff\xfe.example", b"1.2.3.4", b"x" * 64 + b".com"])
def test_invalid_sni_counted(raw):
    hello = read_client_hello(build_client_hello(raw))
    assert hello.sni is None
    assert hello.sni_raw_invalid


def test_absent_sni_not_counted():
    hello = read_client_hello(build_client_hello(None))
    assert hello.sni is None and not hello.sni_raw_invalid


def test_padding_to():
    msg = build_client_hello("p.example", padding_to=512, record=False)
    assert len(msg) == 512
    assert parse_client_hello(msg).length == 512
    assert 21 in parse_client_hello(msg).extensions


def test_pq_hello_spans_two_segments_every_split():
    assert len(build_client_hello("teams.microsoft.com", pq_key_share=True)) > 1460  # > one TCP segment
    stream = build_client_hello("teams.microsoft.com", alpn=("h2",), pq_key_share=True, grease=True, ech=True)
    assert 1700 <= len(stream) <= 1900  # like a 2025 browser: two 1460-byte TCP segments
    for i in range(len(stream)):
        assert read_client_hello(stream[:i]) is None, i
    hello = read_client_hello(stream)
    assert hello is not None and hello.sni == "teams.microsoft.com"
    # bytes after the hello (the next flight) do not matter
    assert read_client_hello(stream + b"\x14\x03\x03\x00\x01\x01") == hello


def test_fragmented_across_records():
    whole = build_client_hello("frag.example", pq_key_share=True)
    for size in (1, 7, 100, 1000):
        stream = build_client_hello("frag.example", pq_key_share=True, max_fragment=size)
        assert stream.count(b"\x16\x03\x01") >= 2
        assert read_client_hello(stream) == read_client_hello(whole)
    stream = build_client_hello("frag.example", max_fragment=300)
    for i in range(len(stream)):
        assert read_client_hello(stream[:i]) is None, i
    assert read_client_hello(stream).sni == "frag.example"


@pytest.mark.parametrize(
    "stream",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x17\x03\x03\x00\x10" + bytes(16),  # application data first
        b"\x16\x02\x00\x00\x10",  # not a 0x03xx version
        b"\x16\x03\x01\x00\x00",  # zero-length handshake fragment
        b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00",  # ServerHello, not ClientHello
        b"\x16\x03\x01\x48\x01\x01",  # record too long
    ],
)
def test_not_a_client_hello(stream):
    with pytest.raises(DecodeError):
        read_client_hello(stream)


def test_interleaved_record_rejected():
    stream = build_client_hello("i.example", max_fragment=100)
    bad = stream[:105] + build_alert(2, 40) + stream[105:]
    with pytest.raises(DecodeError):
        read_client_hello(bad)


def test_malformed_hello_inside_complete_message():
    msg = bytearray(build_client_hello("m.example", record=False))
    msg[4 + 2 + 32] = 200  # session id length beyond the message
    with pytest.raises(DecodeError) as exc:
        read_client_hello(build_record(CT_HANDSHAKE, bytes(msg)))
    assert not isinstance(exc.value, NeedMore)


def test_duplicate_extension_rejected():
    ext = bytes.fromhex("ff01000100")
    body = bytes.fromhex("0303") + bytes(32) + b"\x00" + bytes.fromhex("00021301") + b"\x01\x00"
    body += len(ext * 2).to_bytes(2, "big") + ext * 2
    with pytest.raises(DecodeError):
        parse_client_hello(build_handshake(1, body))


def test_looks_like_tls():
    assert looks_like_tls(build_client_hello("a.example"))
    assert looks_like_tls(b"\x16\x03\x01")
    assert not looks_like_tls(b"\x16\x03")
    assert not looks_like_tls(b"GET / HTTP/1.1")
    assert not looks_like_tls(b"\x17\x03\x03\x00\x10")
    assert not looks_like_tls(b"\x16\x03\x01\x00\x00")


def test_version_names():
    assert TLS_VERSION_NAMES[0x0304] == "TLS 1.3"


# ---------------------------------------------------------------- server side


def test_server_flight_tls13():
    stream = build_server_hello(0x0304) + build_change_cipher_spec() + build_application_data(800)
    flight = read_server_flight(stream)
    assert flight.server_hello and flight.version == 0x0304 and flight.cipher_suite == 0x1301
    assert flight.encrypted and flight.complete and flight.alert is None and not flight.hello_retry
    assert flight.cert_subject is None


def test_server_flight_tls12_with_certificate(cert_der):
    stream = build_server_hello(0x0303, alpn="h2") + build_certificate_record(cert_der)
    stream += build_record(CT_HANDSHAKE, build_handshake(14, b""))  # ServerHelloDone
    flight = read_server_flight(stream)
    assert flight.server_hello and flight.version == 0x0303 and flight.cipher_suite == 0xC02F
    assert flight.alpn == "h2"
    assert flight.cert_subject == "O=Test Org,CN=teams.microsoft.com"
    assert flight.cert_issuer == flight.cert_subject
    assert flight.complete and not flight.encrypted


def test_server_flight_certificate_split_over_records(cert_der):
    hs = build_server_hello(0x0303, record=False) + build_certificate_record(cert_der, record=False)
    stream = build_record(CT_HANDSHAKE, hs, max_fragment=50)
    flight = read_server_flight(stream)
    assert flight.cert_subject == "O=Test Org,CN=teams.microsoft.com"
    cut = read_server_flight(stream[:-10])
    assert cut.server_hello and cut.cert_subject is None and not cut.complete


def test_bad_certificate_gives_no_names():
    flight = read_server_flight(build_server_hello(0x0303) + build_certificate_record(b"\x30\x03\x02\x01\x00"))
    assert flight.server_hello and flight.cert_subject is None and flight.cert_issuer is None


def test_server_alert():
    flight = read_server_flight(build_alert(2, 40))
    assert flight.alert.name == "handshake_failure" and flight.alert.level == 2
    assert not flight.server_hello and flight.complete
    assert read_server_flight(build_alert(2, 49)).alert.name == "access_denied"
    assert read_server_flight(build_alert(2, 112)).alert.name == "unrecognized_name"
    assert read_server_flight(build_alert(2, 250)).alert.name == "alert-250"


def test_warning_alert_then_hello():
    flight = read_server_flight(build_alert(1, 112) + build_server_hello(0x0303))
    assert flight.alert.name == "unrecognized_name" and flight.server_hello


def test_hello_retry_request_then_server_hello():
    stream = build_server_hello(0x0304, hello_retry=True) + build_change_cipher_spec()
    flight = read_server_flight(stream)
    assert flight.hello_retry and not flight.server_hello and flight.version == 0x0304
    stream += build_server_hello(0x0304, cipher_suite=0x1302) + build_application_data(100)
    flight = read_server_flight(stream)
    assert flight.hello_retry and flight.server_hello and flight.cipher_suite == 0x1302 and flight.encrypted


def test_server_flight_edges():
    assert not read_server_flight(b"").complete
    assert not read_server_flight(b"\x16\x03").complete
    with pytest.raises(DecodeError):
        read_server_flight(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(DecodeError):
        read_server_flight(b"\x16\x03\x03\xff\xff")
    # garbage after a good record: keep what we have
    flight = read_server_flight(build_server_hello(0x0303) + b"garbage-garbage")
    assert flight.server_hello


def test_read_alerts():
    client = build_client_hello("c.example") + build_alert(2, 42)
    assert read_alerts(client).name == "bad_certificate"
    assert read_alerts(build_client_hello("c.example")) is None
    assert read_alerts(build_change_cipher_spec() + build_alert(2, 42)) is None  # encrypted by then
    assert read_alerts(b"not tls at all") is None
    assert read_alerts(b"") is None


def test_alert_names_cover_rfc8446():
    for code, name in {0: "close_notify", 40: "handshake_failure", 49: "access_denied", 112: "unrecognized_name", 120: "no_application_protocol"}.items():
        assert ALERT_NAMES[code] == name


# ---------------------------------------------------------------- truncation at every length


def test_truncation_client_hello():
    stream = build_client_hello("t.example", alpn=("h2",), grease=True)
    for i in range(len(stream)):
        assert read_client_hello(stream[:i]) is None
    msg = build_client_hello("t.example", record=False)
    for i in range(len(msg)):
        with pytest.raises(NeedMore):
            parse_client_hello(msg[:i])


def test_truncation_server_flight(cert_der):
    stream = build_server_hello(0x0303, alpn="h2") + build_certificate_record(cert_der) + build_alert(2, 46)
    for i in range(1, len(stream)):
        flight = read_server_flight(stream[:i])
        assert not flight.complete or flight.alert is None
        assert read_alerts(stream[:i]) is None or i == len(stream)
    full = read_server_flight(stream)
    assert full.complete and full.alert.name == "certificate_unknown" and full.cert_subject


def test_certificate_names_without_a_warning_for_a_zero_serial_number():
    """cryptography warns about (and one day refuses) a serial number that is not positive
    (RFC 5280 section 4.1.2.2); the names still come out, and no warning reaches the user."""
    import datetime
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from meshpcap.decode.tls import _cert_names

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "zero.example")])
    start = datetime.datetime(2024, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    version_and_serial = b"\xa0\x03\x02\x01\x02\x02\x01\x01"  # [0] v3, INTEGER 1
    assert der.count(version_and_serial) == 1
    der = der.replace(version_and_serial, version_and_serial[:-1] + b"\x00")  # INTEGER 0
    # what this cryptography does with it, asked directly: it reads it (with a warning) or, in a
    # future release, refuses it; _cert_names must give the names in the first case, nothing in the second
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x509.load_der_x509_certificate(der)
            expected: tuple = ("CN=zero.example", "CN=zero.example")
        except ValueError:
            expected = (None, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = _cert_names(der)
    assert not caught
    assert names == expected


# --------------------------------------------------------------------------- SSL 2.0-compatible hellos, IP literals

# nfstream/skype.pcap frame 135: 2-byte header 0x8046, CLIENT-HELLO, version 3.1, 15 cipher specs, no
# session id, a 16-byte challenge (RFC 5246 appendix E.2)
SSL2_HELLO = bytes.fromhex(
    "8046" "01" "0301" "002d" "0000" "0010"
    "000005" "000004" "00000a" "000009" "000064" "000062" "000008" "000003" "000006"
    "010080" "0700c0" "030080" "060040" "020080" "040080"
    "3fe40572" + "11" * 12)


def test_sslv2_compatible_hello_is_tls_without_sni():
    from meshpcap.decode.tls import looks_like_sslv2_hello, parse_sslv2_client_hello

    assert looks_like_sslv2_hello(SSL2_HELLO[:5]) and not looks_like_tls(SSL2_HELLO[:5])
    hello = read_client_hello(SSL2_HELLO)
    assert hello == parse_sslv2_client_hello(SSL2_HELLO)
    assert hello.sslv2 and hello.sni is None and not hello.sni_raw_invalid and hello.alpn == ()
    assert hello.versions == (0x0301,) and hello.length == len(SSL2_HELLO)
    assert hello.cipher_suites == (0x05, 0x04, 0x0A, 0x09, 0x64, 0x62, 0x08, 0x03, 0x06)  # the 0x00xxxx specs
    for cut in (1, 2, 10, len(SSL2_HELLO) - 1):
        assert read_client_hello(SSL2_HELLO[:cut]) is None
        with pytest.raises(NeedMore):
            parse_sslv2_client_hello(SSL2_HELLO[:cut])
    assert not looks_like_sslv2_hello(build_client_hello("a.example")[:5])


@pytest.mark.parametrize("change,match", [
    ((3, 0x00), "offers no TLS"),  # version 0.1: SSL 2.0 only
    ((2, 0x04), "not CLIENT-HELLO"),
    ((6, 0x2c), "multiple of 3"),
    ((10, 0x0f), "challenge"),
    ((1, 0x47), None),  # longer than the fields: cut (need more) ...
])
def test_sslv2_hello_malformed(change, match):
    from meshpcap.decode.tls import parse_sslv2_client_hello

    data = bytearray(SSL2_HELLO)
    data[change[0]] = change[1]
    if match is None:
        with pytest.raises(NeedMore):
            parse_sslv2_client_hello(bytes(data))
        with pytest.raises(DecodeError, match="do not fill"):  # ... and with one byte more, malformed
            parse_sslv2_client_hello(bytes(data) + b"\x00")
    else:
        with pytest.raises(DecodeError, match=match):
            parse_sslv2_client_hello(bytes(data))


@pytest.mark.parametrize("raw,literal", [(b"52.114.250.152", "52.114.250.152"), (b"2001:db8::1", "2001:db8::1"),
                                         (b"[2001:DB8:0::1]", "2001:db8::1")])
def test_ip_literal_sni_is_no_name_but_kept(raw, literal):
    hello = read_client_hello(build_client_hello(raw))
    assert hello.sni is None and hello.sni_raw_invalid  # RFC 6066 section 3: not a HostName
    assert hello.sni_literal == literal


def test_bad_sni_is_no_literal():
    assert read_client_hello(build_client_hello(b"bad name!")).sni_literal is None
    assert read_client_hello(build_client_hello("teams.microsoft.com")).sni_literal is None
