"""Shared test fixtures: where the repository, its samples and ../shared live."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# A cache directory of its own from the start: importing meshpcap.classify reads issuers.toml through the
# parsed-TOML cache (meshpcap.rules.files.toml_document) while tests are collected, before the fixture below.
_COLLECTION_CACHE = tempfile.mkdtemp(prefix="meshpcap-test-cache-")
atexit.register(shutil.rmtree, _COLLECTION_CACHE, True)
os.environ["MESHPCAP_CACHE_DIR"] = _COLLECTION_CACHE

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


def generated_capture(tmp_path_factory, name: str, packets: int, seed: int) -> Path:
    """The benchmark's generator (bench/gen.py) at a small size: a pcap of TLS, DNS, STUN and RTP flows."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp(name) / f"{name}.pcap"
    subprocess.run([sys.executable, str(REPO / "bench" / "gen.py"), str(out), "--packets", str(packets), "--seed",
                    str(seed)], check=True, capture_output=True)
    return out


def fork_pids(monkeypatch) -> list[int]:
    """The pids of the children os.fork makes from here on (in the test's process)."""
    import os

    pids: list[int] = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return pids


def reaped(pid: int) -> bool:
    """Has this process's child ``pid`` ended and been waited for (no zombie, nothing running)?"""
    import os

    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


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


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """The whole run uses a cache directory of its own (service-tag snapshots, the binary tag index, the
    endpoints files), not the user's: no test depends on, or writes into, ~/.cache/meshpcap."""
    import os

    old = os.environ.get("MESHPCAP_CACHE_DIR")
    os.environ["MESHPCAP_CACHE_DIR"] = str(tmp_path_factory.mktemp("meshpcap-cache"))
    yield
    if old is None:
        os.environ.pop("MESHPCAP_CACHE_DIR", None)
    else:
        os.environ["MESHPCAP_CACHE_DIR"] = old
