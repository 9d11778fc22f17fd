"""meshpcap.settings: every switch read in one place, documented in README's table."""

from __future__ import annotations

import re
import subprocess
import sys

from meshpcap import settings
from tests.conftest import REPO


def test_defaults_and_parsing():
    assert settings.from_environ({}) == settings.Settings()
    s = settings.from_environ({"MESHPCAP_NO_FORK": "1", "MESHPCAP_NO_MMAP": "0", "MESHPCAP_PURE_PYTHON": "yes",
                               "MESHPCAP_MAX_DECOMPRESSED": "2G", "MESHPCAP_MAX_RATIO": "50"})
    assert s.no_fork and not s.no_mmap and s.pure_python
    assert s.max_decompressed == 2 << 30 and s.max_ratio == 50
    assert settings.from_environ({"MESHPCAP_MAX_DECOMPRESSED": "64MiB"}).max_decompressed == 64 << 20
    assert settings.from_environ({"MESHPCAP_MAX_DECOMPRESSED": "lots"}).max_decompressed == settings.Settings().max_decompressed
    assert settings.from_environ({"MESHPCAP_MAX_RATIO": "0"}).max_ratio == 0


def test_override_restores():
    before = settings.get()
    with settings.override(no_fork=True) as s:
        assert s.no_fork and settings.get() is s
    assert settings.get() is before


def test_read_once_per_process():
    code = ("import os; from meshpcap import settings; a = settings.get(); os.environ['MESHPCAP_NO_FORK'] = '1'; "
            "print(a.no_fork, settings.get().no_fork, settings.reload().no_fork)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "", "PYTHONPATH": str(REPO)}).stdout.split()
    assert out == ["False", "False", "True"]


def test_readme_table_lists_every_switch():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### Switches"):]
    listed = set(re.findall(r"^\| `(MESHPCAP_[A-Z_]+)", table, re.M))
    assert listed == set(settings.variables().values())


def test_nothing_else_reads_a_switch():
    """Only settings.py reads MESHPCAP_* switches (the service-tag cache path is not a switch)."""
    for path in (REPO / "meshpcap").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if "environ" in line and "MESHPCAP_" in line:
                assert "MESHPCAP_CACHE_DIR" in line, f"{path}: {line.strip()}"
