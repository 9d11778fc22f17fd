"""Shared test fixtures: where the repository, its samples and ../shared live."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
SHARED = (REPO / ".." / "shared").resolve()
SHARED_CAPTURES = SHARED / "captures"
SHARED_SPEC = SHARED / "spec"


def sample_captures() -> list[Path]:
    return sorted(p for p in SAMPLES.glob("*.pcap*") if p.is_file())


def shared_captures() -> list[Path]:
    if not SHARED_CAPTURES.is_dir():
        return []
    return sorted(
        p for p in SHARED_CAPTURES.rglob("*")
        if p.is_file() and p.suffix != ".md" and "peer-expected" not in p.parts
    )


def capture_id(p: Path) -> str:
    try:
        return str(p.relative_to(SHARED_CAPTURES))
    except ValueError:
        return str(p.relative_to(REPO))


@pytest.fixture
def shared_spec() -> Path:
    if not SHARED_SPEC.is_dir():
        pytest.skip("../shared/spec is not present")
    return SHARED_SPEC
