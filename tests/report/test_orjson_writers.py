"""The writers that hand many items to one orjson call (``joined_json``, ``merged_json``) give exactly
json.dumps(indent=2)'s text of each item, joined as a list at that indent writes them."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.classify.verdicts import FlowVerdict
from meshpcap.flows.model import Flow, IcmpError, StunSummary
from meshpcap.report import analysis as A
from meshpcap.report import flows as RF
from tests.report.test_json_indent2 import Color, Dict, Int, List, Str, texts

INDENTS = st.sampled_from(["  ", "    ", "      "])
ints = st.integers(-(2**63), 2**64 - 1) | st.integers(-(2**80), 2**80)  # beyond 64 bits: orjson refuses them
keys = texts | texts.map(Str) | st.integers(-3, 3) | st.none()  # orjson refuses keys that are not str
scalars = st.none() | st.booleans() | ints | ints.map(Int) | texts | texts.map(Str) | st.just(Color.red)


def _containers(children):
    return (st.lists(children, max_size=5) | st.lists(children, max_size=5).map(tuple)
            | st.lists(children, max_size=3).map(List) | st.dictionaries(keys, children, max_size=5)
            | st.dictionaries(texts, children, max_size=5).map(Dict))


float_free = st.recursive(scalars, _containers, max_leaves=25)  # joined_json is for items without floats


def joined(items, ind: str) -> str:
    return (",\n" + ind).join(RF.json_indent2(x, ind) for x in items)


@settings(max_examples=400, deadline=None)
@given(st.lists(float_free, max_size=6), INDENTS)
def test_joined_json_is_json_dumps(items, ind):
    text = RF.joined_json(items, ind)
    if text is not None:  # None: orjson refused an item
        assert text == joined(items, ind)
    assert RF.joined_or_each(items, ind) == joined(items, ind)


def test_joined_json_refuses_what_orjson_refuses():
    assert RF.joined_json([{"a": 2**70}], "    ") is None
    assert RF.joined_json([{1: 2}], "    ") is None
    assert RF.joined_json(["\ud800"], "    ") is None
    assert RF.joined_or_each([{"a": 2**70}, {1: "\ud800"}], "    ") == joined([{"a": 2**70}, {1: "\ud800"}], "    ")
    assert RF.joined_json([], "    ") == ""


opt_texts = st.none() | texts
small = st.integers(0, 2**16)
icmp_errors = st.builds(IcmpError, small, small, texts, ints, texts, texts)
stuns = st.builds(StunSummary, small, small, small, small, small, st.lists(texts, max_size=2).map(tuple),
                  st.lists(small, max_size=2).map(tuple), st.lists(texts, max_size=2).map(tuple),
                  st.lists(texts, max_size=2).map(tuple), opt_texts, st.booleans())
text_tuples = st.none() | st.lists(texts, max_size=3).map(tuple)
flows = st.builds(
    Flow, ints, texts, st.sampled_from([4, 6]), texts, st.none() | small, texts, st.none() | small, texts, small,
    ints, ints, ints, ints, ints, ints, st.lists(icmp_errors, max_size=2).map(tuple), opt_texts, st.none() | small,
    texts, st.booleans(), small, opt_texts, text_tuples, st.none() | st.booleans(), opt_texts, text_tuples, opt_texts,
    opt_texts, st.none() | small, opt_texts, opt_texts, opt_texts, opt_texts, opt_texts, st.none() | stuns, opt_texts,
    opt_texts, opt_texts, st.lists(st.integers(0, 127), max_size=3).map(tuple))
verdicts = st.builds(FlowVerdict, flows, texts, opt_texts, opt_texts, opt_texts, texts, opt_texts, opt_texts,
                     st.none() | st.booleans(), st.lists(texts, max_size=3).map(tuple))


@settings(max_examples=300, deadline=None)
@given(flows)
def test_orjson_writes_a_flow_as_its_to_dict(flow):
    """merged_json and flows_json_text hand orjson the Flow itself (a dataclass: its fields in order)."""
    assert RF.native_is_to_dict()
    try:
        want = orjson.dumps(flow.to_dict())
    except TypeError:  # beyond 64 bits or a lone surrogate: refused either way
        with pytest.raises(TypeError):
            orjson.dumps(flow)
        return
    assert orjson.dumps(flow) == want


@settings(max_examples=200, deadline=None)
@given(st.lists(flows, max_size=5), INDENTS)
def test_flows_json_text_is_json_dumps(fs, ind):
    assert RF.flows_json_text(fs, ind) == joined([f.to_dict() for f in fs], ind)


@settings(max_examples=200, deadline=None)
@given(st.lists(verdicts, max_size=5), INDENTS)
def test_verdicts_json_is_json_dumps(vs, ind):
    """A verdict's flow and its verdict's fields joined in orjson's text: FlowVerdict.to_dict's bytes."""
    assert A._verdicts_json(vs, ind) == joined([v.to_dict() for v in vs], ind)
    text = RF.merged_json([v.flow for v in vs], list(map(A._verdict_tail, vs)), "rule", ind)
    # the tails as records made from columns (what _verdicts_json gives orjson): the dicts' very text
    assert RF.merged_json([v.flow for v in vs], A._verdict_tails(vs), "rule", ind) == text
    if text is not None:
        assert text == joined([v.to_dict() for v in vs], ind)
        if vs:
            assert list(RF.split_texts([text], ind)) == [RF.json_indent2(v.to_dict(), ind) for v in vs]


def test_merged_json_needs_the_seam_once_per_pair():
    f = Flow(1, "udp", 4, "10.0.0.1", 1, "10.0.0.2", 2, "s", 0, 1, 1, 1, 1, 1, 1)
    assert RF.merged_json([f], [{"rule": None}], "rule", "    ") == json.dumps({**f.to_dict(), "rule": None},
                                                                              indent=2).replace("\n", "\n    ")
    assert RF.merged_json([f], [{"other": 1}], "rule", "    ") is None  # the tail does not open with "rule"
    assert RF.merged_json([f], [{}], "rule", "    ") is None
    with pytest.raises(ValueError):
        RF.merged_json([f], [], "rule", "    ")


# -- floats: what a to_dict builds (dict, list, str, int, float, bool, None) -----------------------------
any_floats = (st.floats() | st.floats(-1e-3, 1e-3) | st.floats(min_value=1e15) | st.integers(-300, 300).map(lambda e: 10.0 ** e)
              | st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-4, 9.99e-5, 1e16, 5e-324]))
built_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | any_floats | texts
built = st.recursive(built_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(texts, c, max_size=5),
                     max_leaves=30)


@settings(max_examples=1000, deadline=None)
@given(built)
def test_built_indent2_vouches_only_for_json_dumps_text(obj):
    """orjson's text, vouched for by its floats' forms and a round trip, is json.dumps(indent=2)'s."""
    text = RF._built_indent2(obj)
    if text is not None:
        assert text == json.dumps(obj, indent=2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3)), max_size=20))
def test_built_indent2_takes_rounded_floats(xs):
    """The streams' floats (rounded to 1 or 3 places, never below 1e-3 but 0) are vouched for."""
    if not RF._floats_as_repr(orjson):
        pytest.skip(f"orjson {orjson.__version__} writes some float otherwise than json.dumps: never vouched for")
    assert RF._built_indent2({"x": xs, "y": [{"ms": x} for x in xs]}) == json.dumps({"x": xs, "y": [{"ms": x} for x in xs]}, indent=2)


@settings(max_examples=200, deadline=None)
@given(st.lists(built, max_size=7), st.sampled_from(["", "  ", "    "]), st.sampled_from([1, 2, 256]))
def test_built_list_writer_is_json_dumps(items, ind, chunk):
    out: list[str] = []
    RF.write_json_list_checked(iter(items), ind, out.append, chunk, built=True)
    assert "".join(out) == RF.json_indent2(items, ind)


def test_an_orjson_that_writes_floats_its_own_way_is_not_relied_on(monkeypatch):
    """Should the installed orjson write a probe float otherwise than json.dumps (as an older or newer one
    might), _built_indent2 vouches for nothing and the list writer checks each chunk the slow way."""
    items = [{"a": 1.5, "b": [0.001, 123.456]}, {"a": 1e16}]
    monkeypatch.setattr(RF, "_FLOATS_AS_REPR", [False])
    assert RF._built_indent2(items) is None
    out: list[str] = []
    RF.write_json_list_checked(iter(items), "  ", out.append, 256, built=True)
    assert "".join(out) == RF.json_indent2(items, "  ")
    monkeypatch.setattr(RF, "_FLOATS_AS_REPR", [])
    assert RF._floats_as_repr(orjson) == all(orjson.dumps(x) == json.dumps(x).encode() for x in RF._FLOAT_PROBES)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=("Cs",))))
def test_ascii_escaped_orjson_text_is_json_dumps(text):
    """orjson's text (UTF-8, controls escaped) with every character from DEL on escaped as json.dumps escapes it:
    the same as json.dumps; U+007E stays, U+007F and beyond, astral ones as surrogate pairs, do not."""
    assert RF._ascii_escaped(orjson.dumps(text).decode()) == json.dumps(text)
    assert RF._ascii_escaped("~\x7f\u00e9\U0001f600") == json.dumps("~\x7f\u00e9\U0001f600")[1:-1]
