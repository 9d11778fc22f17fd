"""A batch over ../shared/captures: one row per file, whatever the file holds.

Every 16th file by default (17 files, about 2 s); MESHPCAP_BATCH_SHARED_ALL=1 takes all of them (260
files, about 20 s on 2 busy cores)."""

from __future__ import annotations

import os

import pytest

from meshpcap.batch import analyze_many, looks_like_capture
from tests.conftest import SAMPLES, SHARED_CAPTURES


def test_every_shared_file_gets_one_row():
    if not SHARED_CAPTURES.is_dir():
        pytest.skip("../shared/captures is not present")
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(SHARED_CAPTURES) for f in fs)
    if os.environ.get("MESHPCAP_BATCH_SHARED_ALL") != "1":
        files = files[::16]
    b = analyze_many(files, service_tags=SAMPLES / "ServiceTags_Public_SAMPLE.json", jobs=2, progress=False,
                     timeout=120)
    caps = b.captures
    assert caps.capture.tolist() == files and caps.capture.is_unique
    assert caps.sha256.notna().all() and caps.verdict.notna().all()
    for row in caps.itertuples():
        if row.verdict == "error":
            # only files that are not captures at all; every capture is read (damage inside is a warning)
            assert not looks_like_capture(row.capture) or "ends inside" in row.error, (row.capture, row.error)
            assert not row.error.startswith(("internal error", "the audit crashed", "timed out")), row.error
        else:
            assert row.packets >= 0 and row.flows >= 0
    assert set(b.flows.capture) <= set(caps.capture[caps.verdict != "error"])
