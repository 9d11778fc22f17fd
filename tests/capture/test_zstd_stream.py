"""The zstd reader walks frame and block headers itself (to bound each decoder call): it must
give exactly what zstandard gives, for every frame header form (single segment or not, content
size in 1, 2, 4 or 8 bytes or absent, checksum or not, several frames, skippable frames) and
whatever the read sizes."""

from __future__ import annotations

import io
import random

import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from meshpcap.capture.compressed import UnzstdStream


def _frames(rng: random.Random, sizes: list[int], level: int, checksum: bool,
            content_size: bool) -> tuple[bytes, bytes]:
    plain, comp = [], []
    c = zstandard.ZstdCompressor(level=level, write_checksum=checksum, write_content_size=content_size)
    for n in sizes:
        # half compressible, half not: raw, RLE and compressed blocks all occur
        data = bytes(n // 2) + rng.randbytes(n - n // 2) if rng.random() < 0.5 else rng.randbytes(n)
        plain.append(data)
        if rng.random() < 0.5:
            comp.append(c.compress(data))  # content size known: single segment for small frames
        else:
            out = io.BytesIO()
            with c.stream_writer(out, closefd=False) as w:  # content size unknown
                w.write(data)
            comp.append(out.getvalue())
        if rng.random() < 0.2:
            comp.append((0x184D2A50 + rng.randrange(16)).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc")
    return b"".join(plain), b"".join(comp)


def _read_all(comp: bytes, reads: list[int]) -> bytes:
    s = UnzstdStream(io.BytesIO(comp))
    out, i = [], 0
    while True:
        part = s.read(reads[i % len(reads)])
        i += 1
        if not part:
            break
        out.append(part)
    assert s.error is None, s.error
    return b"".join(out)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), sizes=st.lists(st.sampled_from([0, 1, 255, 256, 257, 5000, 65535, 65536 + 255,
                                                                     140_000]), min_size=1, max_size=3),
       level=st.sampled_from([1, 3, 9]), checksum=st.booleans(), content_size=st.booleans(),
       reads=st.lists(st.integers(1, 1 << 20), min_size=1, max_size=4))
def test_same_bytes_as_zstandard(seed, sizes, level, checksum, content_size, reads):
    plain, comp = _frames(random.Random(seed), sizes, level, checksum, content_size)
    assert _read_all(comp, reads) == plain
