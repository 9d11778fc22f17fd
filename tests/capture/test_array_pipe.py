"""Arrays sent from the reading child (capture/parallel.py's pickler) come back with the same dtype,
shape and values, whether they cross as a constant or as they are."""

from __future__ import annotations

import io
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.capture.parallel import CONSTANT_MIN, _ArrayPickler


def _round_trip(obj):
    bufs: list = []
    out = io.BytesIO()
    _ArrayPickler(out, protocol=5, buffer_callback=bufs.append).dump(obj)
    sent = sum(b.raw().nbytes for b in bufs)
    return pickle.loads(out.getvalue(), buffers=[bytearray(b.raw()) for b in bufs]), sent


DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES), st.integers(0, 3 * CONSTANT_MIN), st.integers(0, 64), st.integers(0, 2**64 - 1),
       st.booleans())
def test_integer_arrays_come_back_equal(dtype, n, bits, seed, two_d):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(seed)
    lo = int(rng.integers(info.min, info.max, endpoint=True, dtype=dtype))
    span = min((1 << bits) - 1, info.max - lo)
    a = (lo + rng.integers(0, span, n, endpoint=True, dtype=np.uint64).astype(object)).astype(dtype) if n else \
        np.zeros(0, dtype)
    if two_d and n % 2 == 0:
        a = a.reshape(-1, 2)
    back, _ = _round_trip((a, "x"))
    got = back[0]
    assert got.dtype == a.dtype and got.shape == a.shape
    assert np.array_equal(got, a)
    assert got.flags.writeable


def test_constant_arrays_cross_as_one_value_and_others_as_they_are():
    n = 4 * CONSTANT_MIN
    offsets = np.arange(n, dtype=np.int64) * 700 + (1 << 40)
    const = np.full(n, 7, np.int32)
    top = np.full(n, 2**64 - 1, np.uint64)
    flags = np.arange(n) % 3 == 0
    small = np.full(CONSTANT_MIN - 1, 3, np.int64)  # below the size where it pays: sent whole
    (o, c, t, f, s), sent = _round_trip((offsets, const, top, flags, small))
    assert np.array_equal(o, offsets) and o.dtype == offsets.dtype
    assert np.array_equal(c, const) and c.dtype == const.dtype
    assert np.array_equal(t, top) and t.dtype == top.dtype
    assert np.array_equal(f, flags) and f.dtype == bool
    assert np.array_equal(s, small)
    assert sent == 8 * n + n + 8 * (CONSTANT_MIN - 1)
