"""Shared fixtures for the rules tests: where the optional shared/spec data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec"


@pytest.fixture
def spec_file():
    """Return a function giving a shared/spec file, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = SPEC / name
        if not path.is_file():
            pytest.skip(f"shared data {name} not available")
        return path

    return get
