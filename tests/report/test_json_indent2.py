"""``json_indent2`` is exactly ``json.dumps(obj, indent=2)``; ``Flow.to_dict`` is what it always was."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.flows.model import Flow, FlowTable, IcmpError, StunSummary
from meshpcap.report.flows import json_indent2, json_indent2_checked, render_flows, write_json_list_checked


class Str(str):
    pass


class Int(int):
    pass


class Float(float):
    pass


class Color(enum.IntEnum):
    red = 1


class List(list):
    pass


class Dict(dict):
    pass


class NoItems(dict):  # truthy, yet items() yields nothing
    def items(self):
        return iter(())


class NoIter(list):  # truthy, yet iterates as empty
    def __iter__(self):
        return iter(())


def dumps(obj) -> str:
    return json.dumps(obj, indent=2)


texts = st.text(st.characters(blacklist_categories=()), max_size=12) | st.sampled_from(
    ["", "a", "client", "h2", "é", "\u2603", "\ud800", "\U0001f600", '"', "\\", "\n\t", "\x00", "</script>"]
)
floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e300, 5e-324]
)
ints = st.integers() | st.integers(min_value=-(2**100), max_value=2**100)
scalars = (
    st.none()
    | st.booleans()
    | ints
    | floats
    | texts
    | texts.map(Str)
    | ints.map(Int)
    | floats.map(Float)
    | st.just(Color.red)
)
keys = texts | texts.map(Str) | ints | floats | st.booleans() | st.none() | st.just(Color.red)


def containers(children):
    return (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.lists(children, max_size=4).map(List)
        | st.lists(texts, min_size=1, max_size=4)
        | st.lists(texts, min_size=1, max_size=4).map(tuple)
        | st.dictionaries(keys, children, max_size=6)
        | st.dictionaries(texts, children, max_size=6).map(Dict)
        | st.dictionaries(texts, children, max_size=6).map(OrderedDict)
        # dicts of one shape, as in a flow table: the cached key pieces are reused
        | st.lists(st.fixed_dictionaries({"id": children, "name": children, "tags": children}), max_size=4)
    )


json_like = st.recursive(scalars, containers, max_leaves=40)


@settings(max_examples=500, deadline=None)
@given(json_like)
def test_same_as_json_dumps(obj):
    assert json_indent2(obj) == dumps(obj)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_like, max_size=3), json_like)
def test_same_as_json_dumps_nested(objs, obj):
    # one call, many depths: the key pieces cached for one depth must not leak into another
    doc = {"a": objs, "b": {"a": objs, "c": [obj, {"a": obj}]}, "c": [[objs]]}
    assert json_indent2(doc) == dumps(doc)


@pytest.mark.parametrize("obj", [
    None, True, False, 0, -1, 2**70, 1.5, float("nan"), float("inf"), -float("inf"), "", "x",
    [], (), {}, [[]], [{}], {"": []}, {"a": {}}, [None, True, False], ["a", 1], ["a", "b"], ("a", None),
    [1, "a"], {1: 2, "1": 3}, {True: 1, None: 2, 1.5: 3, float("nan"): 4, -float("inf"): 5},
    {Color.red: Color.red}, {Str("k"): Str("v")}, [Int(3), Float(2.5), Float("nan")],
    Dict(a=List([1, (2, "x")])), OrderedDict([("z", 1), ("a", 2)]),
    # equal keys of different types at one depth (True == 1 == 1.0): each is written its own way
    [{True: 1}, {1: 2}, {1.0: 3}, {Color.red: 4}, {"1": 5}, {Str("1"): 6}],
    [{"1": 5}, {1: 2}, {True: 1}, {1.0: 3}, {None: 0}, {"null": 0}],
    # containers that are truthy but yield nothing: json.dumps' own (odd) output
    NoItems(a=1), NoIter([1]), {"a": NoItems(x=1), "b": NoIter([1]), "c": [NoItems(y=2), NoIter(["s"])]},
])
def test_odd_inputs(obj):
    assert json_indent2(obj) == dumps(obj)


@pytest.mark.parametrize("writer", [json_indent2, json_indent2_checked])
@pytest.mark.parametrize("obj", [
    object(), {1, 2}, b"x", [object()], ["a", b"x"], ["a", {"x": {1}}], {"a": object()},
    {(1, 2): 1}, {"a": 1, (1, 2): 2}, {"a": [set()], "b": object()}, {"a": [], b"k": 1},
    [{"a": 1}, {"a": frozenset()}], {"a": {1, 2}}, [b"x"],
])
def test_unserializable_raises_like_json_dumps(obj, writer):
    with pytest.raises(TypeError) as expected:
        dumps(obj)
    with pytest.raises(TypeError) as got:
        writer(obj)
    assert str(got.value) == str(expected.value)


# floats orjson writes its own way (1e-7, 1e16, null for NaN), beside floats it writes as json.dumps does
float_texts = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e-07, 1e-05, 0.0001, 1e16, 1e15, 123456789012345680.0, 0.1 + 0.2, 1.5, 310.472])


@settings(max_examples=500, deadline=None)
@given(json_like | st.recursive(float_texts | texts, containers, max_leaves=40), st.sampled_from(["", "  "]))
def test_checked_is_json_dumps(obj, indent):
    """json_indent2_checked (orjson where its compact text is json.dumps') gives json_indent2's text."""
    assert json_indent2_checked(obj, indent) == json_indent2(obj, indent)


@pytest.mark.parametrize("obj", [[1e-07], {"a": float("nan")}, [float("inf")], {"x": 1e16}, ["\u00e9"],
                                 {1: 2}, [2**70], {"a": [0.001, 310.472, None, True, "b"]}, [[], {}, ""]]
                         # tried again member by member: orjson for the members it writes the same
                         + [{"ids": list(range(50)), "src": "\u2026", "deep": [{"x": "\u00e9", "y": [1, 2]}, {}, []],
                             "n": {"k": 2**70, 1: "a"}}, ({"a": ("\u00fc", [1e-07])},)])
def test_checked_odd_floats_and_text(obj):
    assert json_indent2_checked(obj) == dumps(obj)
    assert json_indent2_checked(obj, "    ") == dumps(obj).replace("\n", "\n    ")


@settings(max_examples=300, deadline=None)
@given(st.lists(json_like | st.recursive(float_texts | texts, containers, max_leaves=20), max_size=7),
       st.sampled_from(["", "  ", "    "]), st.sampled_from([1, 2, 3, 256]))
def test_checked_list_writer_is_json_dumps(items, ind, chunk):
    """write_json_list_checked, chunk by chunk (orjson for a chunk whose compact text is json.dumps'),
    writes json_indent2 of the list at indent ``ind``."""
    out: list[str] = []
    write_json_list_checked(iter(items), ind, out.append, chunk)
    assert "".join(out) == json_indent2(items, ind)


# -- Flow.to_dict ---------------------------------------------------------------------------------


def reference_to_dict(flow: Flow) -> dict:
    """Flow.to_dict as it was written first, field by field."""
    out = {}
    for f in fields(flow):
        v = getattr(flow, f.name)
        if f.name == "icmp_errors":
            v = [e.to_dict() for e in v]
        elif isinstance(v, StunSummary):
            v = v.to_dict()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _flow(**kw) -> Flow:
    base = dict(
        id=1, transport="udp", ip_version=4, client="10.0.0.1", client_port=50000, server="52.112.0.10",
        server_port=3478, state="bidirectional", syn_count=0, packets_c2s=3, packets_s2c=2, bytes_c2s=300,
        bytes_s2c=200, first_ns=1_000, last_ns=2_000,
    )
    base.update(kw)
    return Flow(**base)


FLOWS = [
    _flow(),
    _flow(
        transport="tcp", state="rejected", syn_count=2, rst_from="server", rst_ttl=60, encapsulated=True,
        icmp_errors=(IcmpError(3, 13, "192.0.2.254", 1_500, "administratively prohibited"),
                     IcmpError(11, 0, "192.0.2.1", 1_600, "time exceeded", toward="client")),
        sni="teams.microsoft.com", alpn=("h2", "http/1.1"), ech=False, dns_names=("teams.microsoft.com",),
        tls_version="TLS 1.3", connect_status=403, name="teams.microsoft.com", name_source="sni",
    ),
    _flow(
        stun=StunSummary(requests=2, successes=1, errors=1, methods=("Allocate request", "Allocate error 401"),
                         error_codes=(401,), mapped=("203.0.113.9:51000",), realm="example.org", ms_turn=True),
        alpn=(), dns_names=(),
    ),
]


@pytest.mark.parametrize("flow", FLOWS)
def test_flow_to_dict_unchanged(flow):
    got = flow.to_dict()
    want = reference_to_dict(flow)
    assert got == want
    assert list(got) == list(want)
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_render_flows_json_is_json_dumps():
    ft = FlowTable(capture={"path": "x.pcap", "packets": 5, "undecoded": {}}, flows=FLOWS, stats={"malformed": {}})
    assert render_flows(ft, "json") == dumps(ft.to_dict()) + "\n"


# -- the streaming writer (write_flows_json): orjson where its bytes are json.dumps' ------------------


def _odd_flow(i: int, text: str) -> Flow:
    return _flow(id=i, sni=text, cert_subject=text, dns_names=(text, "a.example"), bytes_c2s=2**70 if i == 3 else 1)


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, min_size=1, max_size=5))
def test_streamed_json_is_json_dumps_for_any_string(strings):
    # DEL, non-ASCII, control characters, surrogates and integers beyond 64 bits: orjson writes or
    # refuses them otherwise, so those records must take json_indent2's way
    flows = FLOWS + [_odd_flow(i, s) for i, s in enumerate(strings + ["\x7f", "é", "\x1f"], start=3)]
    ft = FlowTable(capture={"path": "ü.pcap", "n": [1, "\x7f"]}, flows=flows, stats={"malformed": {"tls": 1}})
    assert render_flows(ft, "json") == dumps(ft.to_dict()) + "\n"


@pytest.mark.parametrize("n", [0, 1, 4095, 4096, 4097, 9000])
def test_streamed_json_across_chunks(n):
    flows = [_flow(id=i) for i in range(1, n + 1)]
    ft = FlowTable(capture={}, flows=flows)
    assert render_flows(ft, "json") == dumps(ft.to_dict()) + "\n"


def test_records_written_by_orjson_hold_no_floats():
    """report.flows._item_encoder trusts orjson with records without floats (it writes 1e-07 as
    1e-7): a float field in a record written through it must take json_indent2's way first."""
    from meshpcap.classify.verdicts import FlowVerdict
    from meshpcap.flows.model import DnsEvent

    for cls in (Flow, DnsEvent, IcmpError, StunSummary, FlowVerdict):
        assert [f.name for f in fields(cls) if "float" in str(f.type)] == [], cls


def test_checked_circular_raises_like_json_dumps():
    loop: list = ["\u00e9"]
    loop.append(loop)
    with pytest.raises(ValueError) as expected:
        dumps(loop)
    with pytest.raises(ValueError) as got:
        json_indent2_checked({"a": loop})
    assert str(got.value) == str(expected.value)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.text(st.characters(exclude_categories=["Cs"])) | st.integers(-5, 5),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4),
                    max_leaves=12))
def test_orjson_text_escaped_as_json_dumps_escapes(obj):
    """Non-ASCII text, DEL, astral characters (surrogate pairs) and controls: orjson's text, escaped as
    json.dumps escapes it (ensure_ascii), is json.dumps' text, so orjson writes it."""
    from meshpcap.report.flows import _orjson_indent2

    assert _orjson_indent2(obj) == dumps(obj)
    assert _orjson_indent2(["\u00e9\u2026\x7f\U0001f600\u2028\x01\n"]) == dumps(["\u00e9\u2026\x7f\U0001f600\u2028\x01\n"])
