"""Tests for meshpcap.decode.stun: RFC 5769 vectors, TURN exchanges, MS-TURN, ChannelData, TCP framing, builders."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.decode.buffer import DecodeError, NeedMore
from meshpcap.decode.stun import (
    ERROR,
    INDICATION,
    LIFETIME,
    MAGIC_COOKIE,
    MAPPED_ADDRESS,
    MS_VERSION,
    MS_XOR_MAPPED_ADDRESS,
    NONCE,
    REALM,
    REQUEST,
    REQUESTED_TRANSPORT,
    SOFTWARE,
    SUCCESS,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    XOR_PEER_ADDRESS,
    XOR_RELAYED_ADDRESS,
    demux_first_byte,
    looks_like_stun,
    parse_channel_data,
    parse_stun,
    split_stun_tcp,
    verify_fingerprint,
    verify_integrity,
)
from meshpcap.testing.stun import (
    build_address,
    build_channel_data,
    build_error_code,
    build_stun,
    build_xor_address,
)

PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"  # RFC 5769 section 2
TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")

# RFC 5769 section 2.1: sample request (Binding request from an ICE agent).
RFC5769_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"  # header: Binding request, length 88, cookie, transaction ID
    "802200105354554e207465737420636c69656e74"  # SOFTWARE "STUN test client"
    "002400046e0001ff"  # PRIORITY
    "80290008932ff9b151263b36"  # ICE-CONTROLLED
    "000600096576746a3a68367659202020"  # USERNAME "evtj:h6vY" + 3 bytes padding (spaces)
    "000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"  # MESSAGE-INTEGRITY
    "80280004e57a3bcf"  # FINGERPRINT
)
# RFC 5769 section 2.2: sample IPv4 response.
RFC5769_RESPONSE_V4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"  # header: Binding success, length 60
    "8022000b7465737420766563746f7220"  # SOFTWARE "test vector" + 1 byte padding
    "002000080001a147e112a643"  # XOR-MAPPED-ADDRESS 192.0.2.1:32853
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"  # MESSAGE-INTEGRITY
    "80280004c07d4c96"  # FINGERPRINT
)
# RFC 5769 section 2.3: sample IPv6 response.
RFC5769_RESPONSE_V6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"  # header: Binding success, length 72
    "8022000b7465737420766563746f7220"  # SOFTWARE "test vector"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"  # XOR-MAPPED-ADDRESS [2001:db8:1234:5678:11:2233:4455:6677]:32853
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"  # MESSAGE-INTEGRITY
    "80280004c8fb0b4c"  # FINGERPRINT
)

T_ID = bytes(range(1, 13))


def _allocate_request() -> bytes:
    # RFC 8656 section 7.1: REQUESTED-TRANSPORT with protocol 17 (UDP).
    return build_stun(0x003, REQUEST, [(REQUESTED_TRANSPORT, bytes([17, 0, 0, 0])), (SOFTWARE, b"meshpcap test")], T_ID, fingerprint=True)


def _allocate_401() -> bytes:
    return build_stun(
        0x003,
        ERROR,
        [build_error_code(401, "Unauthorized"), (REALM, b"rtcmedia"), (NONCE, b"abc123nonce")],
        T_ID,
        fingerprint=True,
    )


def _allocate_success() -> bytes:
    tid = bytes(range(20, 32))
    return build_stun(
        0x003,
        SUCCESS,
        [
            build_xor_address(XOR_RELAYED_ADDRESS, "52.113.4.5", 51234, tid),
            build_xor_address(XOR_MAPPED_ADDRESS, "2001:db8::7", 50000, tid),
            (LIFETIME, struct.pack("!I", 600)),
            (MS_VERSION, struct.pack("!I", 6)),
        ],
        tid,
        integrity_key=hashlib.md5(b"user:rtcmedia:pass").digest(),
        fingerprint=True,
    )


def test_rfc5769_request() -> None:
    msg = parse_stun(RFC5769_REQUEST)
    assert (msg.method, msg.cls, msg.method_name, msg.class_name) == (1, 0, "Binding", "request")
    assert msg.magic_cookie and msg.transaction_id == TID and msg.length == 88
    assert msg.software == "STUN test client"
    assert msg.username == b"evtj:h6vY"
    assert msg.ice and msg.has_integrity and msg.has_fingerprint
    assert msg.attributes == (0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028)
    assert msg.xor_mapped is None and msg.error_code is None
    assert looks_like_stun(RFC5769_REQUEST)
    assert verify_fingerprint(RFC5769_REQUEST) and verify_integrity(RFC5769_REQUEST, PASSWORD)
    assert not verify_integrity(RFC5769_REQUEST, b"wrong")


def test_rfc5769_ipv4_response() -> None:
    msg = parse_stun(RFC5769_RESPONSE_V4)
    assert msg.type_name == "Binding success"
    assert msg.xor_mapped == ("192.0.2.1", 32853)
    assert msg.software == "test vector" and not msg.ice
    assert verify_fingerprint(RFC5769_RESPONSE_V4) and verify_integrity(RFC5769_RESPONSE_V4, PASSWORD)


def test_rfc5769_ipv6_response() -> None:
    msg = parse_stun(RFC5769_RESPONSE_V6)
    assert msg.xor_mapped == ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    assert msg.software == "test vector"
    assert verify_fingerprint(RFC5769_RESPONSE_V6) and verify_integrity(RFC5769_RESPONSE_V6, PASSWORD)


def test_builder_reproduces_rfc5769_xor_addresses() -> None:
    assert build_xor_address(XOR_MAPPED_ADDRESS, "192.0.2.1", 32853, TID)[1] == bytes.fromhex("0001a147e112a643")
    v6 = build_xor_address(XOR_MAPPED_ADDRESS, "2001:db8:1234:5678:11:2233:4455:6677", 32853, TID)[1]
    assert v6 == bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")


def test_builder_reproduces_rfc5769_response_integrity_and_fingerprint() -> None:
    # The builder pads with zero bytes where RFC 5769 used a space, so compare up to that byte
    # and check that the digests it writes verify.
    attrs = [(SOFTWARE, b"test vector"), build_xor_address(XOR_MAPPED_ADDRESS, "192.0.2.1", 32853, TID)]
    built = build_stun(0x001, SUCCESS, attrs, TID, integrity_key=PASSWORD, fingerprint=True)
    assert len(built) == len(RFC5769_RESPONSE_V4)
    assert verify_integrity(built, PASSWORD) and verify_fingerprint(built)
    assert built[:35] == RFC5769_RESPONSE_V4[:35]
    assert parse_stun(built).xor_mapped == ("192.0.2.1", 32853)


def test_turn_allocate_request() -> None:
    raw = _allocate_request()
    assert raw[:2] == b"\x00\x03" and looks_like_stun(raw) and verify_fingerprint(raw)
    msg = parse_stun(raw)
    assert msg.type_name == "Allocate request"
    assert msg.attributes == (REQUESTED_TRANSPORT, SOFTWARE, 0x8028)
    assert msg.software == "meshpcap test" and msg.has_fingerprint and not msg.has_integrity


def test_turn_allocate_401_with_realm_and_nonce() -> None:
    raw = _allocate_401()
    assert raw[:2] == b"\x01\x13"
    msg = parse_stun(raw)
    assert msg.type_name == "Allocate error"
    assert msg.error_code == 401 and msg.error_reason == "Unauthorized"
    assert msg.realm == "rtcmedia" and msg.nonce == b"abc123nonce"
    assert msg.transaction_id == T_ID


def test_turn_allocate_success() -> None:
    raw = _allocate_success()
    assert raw[:2] == b"\x01\x03"
    msg = parse_stun(raw)
    assert msg.relayed == ("52.113.4.5", 51234)
    assert msg.xor_mapped == ("2001:db8::7", 50000)
    assert msg.lifetime == 600 and msg.ms_version == 6
    assert msg.has_integrity and msg.has_fingerprint
    assert verify_integrity(raw, hashlib.md5(b"user:rtcmedia:pass").digest())


@pytest.mark.parametrize(
    "method,cls,wire",
    [(0x001, 0, 0x0001), (0x001, 2, 0x0101), (0x001, 3, 0x0111), (0x003, 3, 0x0113), (0x004, 2, 0x0104),
     (0x008, 2, 0x0108), (0x009, 0, 0x0009), (0x006, 1, 0x0016), (0x007, 1, 0x0017), (0x00C, 1, 0x001C)],
)
def test_message_type_encoding(method: int, cls: int, wire: int) -> None:
    raw = build_stun(method, cls, [], T_ID)
    assert int.from_bytes(raw[:2], "big") == wire
    msg = parse_stun(raw)
    assert (msg.method, msg.cls) == (method, cls)


def test_send_indication_with_peer_and_data() -> None:
    raw = build_stun(0x006, INDICATION, [build_xor_address(XOR_PEER_ADDRESS, "10.1.2.3", 5000, T_ID), (0x0013, b"hello")], T_ID)
    msg = parse_stun(raw)
    assert msg.type_name == "Send indication" and msg.attributes == (XOR_PEER_ADDRESS, 0x0013)


def test_ms_xor_mapped_address_used_when_standard_absent() -> None:
    raw = build_stun(0x001, SUCCESS, [build_xor_address(MS_XOR_MAPPED_ADDRESS, "198.51.100.9", 3478, T_ID)], T_ID)
    assert parse_stun(raw).xor_mapped == ("198.51.100.9", 3478)


def test_mapped_address_plain() -> None:
    raw = build_stun(0x001, SUCCESS, [build_address(MAPPED_ADDRESS, "203.0.113.7", 40000)], T_ID)
    assert parse_stun(raw).mapped == ("203.0.113.7", 40000)


@settings(max_examples=300, deadline=None)
@given(v4=st.ip_addresses(v=4), v6=st.ip_addresses(v=6), port=st.integers(0, 65535),
       tid=st.binary(min_size=12, max_size=12))
def test_addresses_read_as_ipaddress_writes_them(v4, v6, port: int, tid: bytes) -> None:
    """The addresses' text is made from the bytes directly for IPv4 (not through ipaddress, at a third of
    the cost): the same text as ipaddress's, plain and XORed, for every address and port."""
    attrs = [build_address(MAPPED_ADDRESS, str(v4), port), build_xor_address(XOR_MAPPED_ADDRESS, str(v4), port, tid),
             build_xor_address(XOR_RELAYED_ADDRESS, str(v6), port, tid)]
    msg = parse_stun(build_stun(0x003, SUCCESS, attrs, tid))
    assert msg.mapped == (str(v4), port) and msg.xor_mapped == (str(v4), port)
    assert msg.relayed == (v6.compressed, port)
    v6_attrs = [build_address(MAPPED_ADDRESS, str(v6), port), build_xor_address(XOR_MAPPED_ADDRESS, str(v6), port, tid),
                build_xor_address(XOR_RELAYED_ADDRESS, str(v4), port, tid)]
    msg = parse_stun(build_stun(0x003, SUCCESS, v6_attrs, tid))
    assert msg.mapped == (v6.compressed, port) and msg.xor_mapped == (v6.compressed, port)
    assert msg.relayed == (str(v4), port)


def test_legacy_rfc3489_without_cookie() -> None:
    tid16 = bytes(range(100, 116))
    raw = build_stun(0x001, SUCCESS, [build_address(MAPPED_ADDRESS, "192.0.2.44", 1234)], tid16)
    msg = parse_stun(raw)
    assert not msg.magic_cookie and msg.transaction_id == tid16 and msg.mapped == ("192.0.2.44", 1234)
    assert not looks_like_stun(raw)


def test_legacy_without_cookie_rejected_when_inconsistent() -> None:
    # Length 6 (not a multiple of 4) and no cookie: not accepted.
    raw = struct.pack("!HH", 0x0001, 6) + bytes(16) + b"\x00\x06\x00\x02ab"
    with pytest.raises(DecodeError):
        parse_stun(raw)
    # Length 8 but the attribute claims 12 bytes.
    raw = struct.pack("!HH", 0x0001, 8) + bytes(16) + b"\x00\x06\x00\x0cabcd"
    with pytest.raises(DecodeError):
        parse_stun(raw)


def test_ms_turn_realm_nonce_swapped_and_unpadded() -> None:
    # Legacy MS-TURN Allocate error: no cookie, MAGIC-COOKIE attribute first, NONCE 0x0014 and REALM 0x0015, no padding.
    attrs = (
        struct.pack("!HHI", 0x000F, 4, 0x72C64BC6)
        + struct.pack("!HH", 0x0009, 16) + bytes([0, 0, 4, 1]) + b"Unauthorized"
        + struct.pack("!HH", 0x0014, 5) + b"nonce"
        + struct.pack("!HH", 0x0015, 7) + b"MSRTC.x"
    )
    raw = struct.pack("!HH", 0x0113, len(attrs)) + bytes(range(16)) + attrs
    msg = parse_stun(raw)
    assert msg.ms_turn and not msg.magic_cookie
    assert msg.error_code == 401 and msg.realm == "MSRTC.x" and msg.nonce == b"nonce"


def test_rfc_numbers_without_ms_magic_cookie() -> None:
    raw = build_stun(0x003, ERROR, [build_error_code(438, "Stale Nonce"), (0x0014, b"realm.example"), (0x0015, b"n")], T_ID)
    msg = parse_stun(raw)
    assert not msg.ms_turn and msg.realm == "realm.example" and msg.nonce == b"n" and msg.error_code == 438


def test_attribute_after_fingerprint_rejected() -> None:
    raw = build_stun(0x001, REQUEST, [], T_ID, fingerprint=True)
    extra = struct.pack("!HH", USERNAME, 4) + b"abcd"
    bad = struct.pack("!HH", 0x0001, len(raw) - 20 + 8) + raw[4:] + extra
    with pytest.raises(DecodeError, match="FINGERPRINT"):
        parse_stun(bad)


def test_not_stun() -> None:
    with pytest.raises(DecodeError):
        parse_stun(b"\x16\x03\x01" + bytes(40))
    with pytest.raises(DecodeError):
        parse_stun(RFC5769_REQUEST + b"\x00\x00\x00\x00")  # trailing bytes
    assert not looks_like_stun(b"\x16\x03\x01" + bytes(40))
    assert not looks_like_stun(RFC5769_REQUEST[:-4])
    assert not looks_like_stun(b"")


def test_truncation_at_every_length() -> None:
    for raw in (RFC5769_REQUEST, RFC5769_RESPONSE_V6, _allocate_success()):
        for i in range(len(raw)):
            with pytest.raises(NeedMore):
                parse_stun(raw[:i])
        parse_stun(raw)


def test_channel_data() -> None:
    raw = build_channel_data(0x4001, b"\x80" + bytes(11))
    assert raw[:4] == b"\x40\x01\x00\x0c"
    assert parse_channel_data(raw) == parse_channel_data(raw + b"\x00\x00\x00") == (cd := parse_channel_data(raw))
    assert (cd.channel, cd.length) == (0x4001, 12)
    # RFC 5766 range up to 0x7FFF is accepted too.
    assert parse_channel_data(build_channel_data(0x7FFE, b"abc")).channel == 0x7FFE
    with pytest.raises(NeedMore):
        parse_channel_data(raw[:-1])
    with pytest.raises(NeedMore):
        parse_channel_data(raw[:3])
    with pytest.raises(DecodeError):
        parse_channel_data(b"\x80\x00\x00\x00")
    with pytest.raises(DecodeError):
        parse_channel_data(raw + bytes(8))
    assert build_channel_data(0x4000, b"abcde", pad=True) == b"\x40\x00\x00\x05abcde\x00\x00\x00"


def test_split_stun_tcp() -> None:
    req = _allocate_request()
    err = _allocate_401()
    chan = build_channel_data(0x4002, b"xyzzy", pad=True)
    partial = _allocate_success()[:30]
    stream = req + err + chan + partial
    frames, used = split_stun_tcp(stream)
    assert frames == [req, err, chan[:9]]
    assert used == len(req) + len(err) + len(chan)
    assert parse_stun(frames[1]).error_code == 401
    assert parse_channel_data(frames[2]).length == 5
    # Channel data whose padding has not arrived yet waits.
    assert split_stun_tcp(chan[:10]) == ([], 0)
    assert split_stun_tcp(b"\x00\x01") == ([], 0)
    with pytest.raises(DecodeError):
        split_stun_tcp(req + b"\x16\x03\x01\x00\x10")


@pytest.mark.parametrize(
    "byte,kind",
    [(0, "stun"), (3, "stun"), (4, "other"), (16, "zrtp"), (19, "zrtp"), (20, "dtls"), (22, "dtls"), (63, "dtls"),
     (64, "turn-channel"), (79, "turn-channel"), (80, "other"), (127, "other"), (128, "rtp"), (191, "rtp"), (192, "other"), (255, "other")],
)
def test_demux_first_byte(byte: int, kind: str) -> None:
    assert demux_first_byte(byte) == kind


def test_builder_validation() -> None:
    with pytest.raises(ValueError):
        build_stun(0x001, 0, [], b"short")
    with pytest.raises(ValueError):
        build_error_code(200, "OK")
    with pytest.raises(ValueError):
        build_channel_data(0x3FFF, b"")
    assert MAGIC_COOKIE == 0x2112A442


VALID = [RFC5769_REQUEST, RFC5769_RESPONSE_V6, _allocate_401(), _allocate_success()]


@settings(max_examples=300, deadline=None)
@given(which=st.integers(0, len(VALID) - 1), cut=st.integers(0, 120), tail=st.binary(max_size=64))
def test_fuzz_stun_prefix_plus_random(which: int, cut: int, tail: bytes) -> None:
    data = VALID[which][:cut] + tail
    try:
        parse_stun(data)
    except DecodeError:
        pass
    looks_like_stun(data)
    verify_fingerprint(data)
    verify_integrity(data, PASSWORD)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120))
def test_fuzz_random_bytes(data: bytes) -> None:
    for fn in (parse_stun, parse_channel_data, split_stun_tcp):
        try:
            fn(data)
        except DecodeError:
            pass


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 200), tail=st.binary(max_size=40))
def test_fuzz_tcp_stream(cut: int, tail: bytes) -> None:
    stream = (_allocate_request() + build_channel_data(0x4001, b"abc", pad=True) + _allocate_401())[:cut] + tail
    try:
        frames, used = split_stun_tcp(stream)
    except DecodeError:
        return
    assert used <= len(stream)
    for frame in frames:
        try:
            parse_stun(frame) if frame[0] <= 3 else parse_channel_data(frame)
        except DecodeError:
            pass
