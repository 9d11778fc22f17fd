"""The optional compiled helpers (hatch_build.py builds them): present wherever a C compiler is."""

from __future__ import annotations

import importlib
import os
import shutil
import sysconfig

import pytest

from meshpcap._native import load
from meshpcap.capture import accel
from meshpcap.decode import dns, frames, rtp, tls
from meshpcap.flows import engine

MODULES = {"meshpcap.capture._walk": accel.ABI, "meshpcap.decode._headers": frames.HEADERS_ABI,
           "meshpcap.flows._group": engine.GROUP_ABI, "meshpcap.decode._media": rtp.MEDIA_ABI,
           "meshpcap.decode._tls": tls.TLS_ABI, "meshpcap.decode._dns": dns.DNS_ABI}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_built_where_a_compiler_exists(name):
    if os.environ.get("MESHPCAP_NO_EXTENSION"):
        pytest.skip("MESHPCAP_NO_EXTENSION is set")
    cc = (sysconfig.get_config_var("CC") or "").split()
    if not cc or shutil.which(cc[0]) is None:
        pytest.skip("no C compiler on this machine")
    try:
        module = importlib.import_module(name)
    except ImportError:
        pytest.fail(f"installed without {name}: run pip install -e . again")
    assert module.ABI == MODULES[name], f"{name} is stale: run pip install -e . again"


def test_pure_python_is_selectable(monkeypatch):
    from meshpcap import settings

    monkeypatch.setenv("MESHPCAP_PURE_PYTHON", "1")
    monkeypatch.setattr(settings, "_current", settings.from_environ())
    assert all(load(name, abi) is None for name, abi in MODULES.items())
    monkeypatch.setattr(settings, "_current", settings.Settings())
    assert load("meshpcap.no_such_module", 1) is None


def test_a_stale_build_is_ignored():
    for name, abi in MODULES.items():
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        assert load(name, abi + 1) is None


def test_a_build_from_older_source_is_ignored(tmp_path):
    """A module whose SOURCE_HASH is not the hash of the .c beside it (edited, not rebuilt) is not used."""
    import types

    from meshpcap._native import is_current, source_hash

    (tmp_path / "_fake.c").write_bytes(b"int x;\n")
    module = types.ModuleType("meshpcap.fake._fake")
    module.__file__ = str(tmp_path / "_fake.cpython-311-x86_64-linux-gnu.so")
    module.SOURCE_HASH = source_hash(b"int x;\n")
    assert is_current(module)
    module.SOURCE_HASH = source_hash(b"int y;\n")
    assert not is_current(module)
    module.__file__ = str(tmp_path / "elsewhere" / "_fake.so")  # no source to compare: trusted
    assert is_current(module)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_built_from_the_source_in_this_tree(name):
    try:
        module = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not built")
    from meshpcap._native import is_current

    assert is_current(module), f"{name} was built from an older {name.rsplit('.', 1)[-1]}.c: run pip install -e . again"


def test_sha256_hex_is_hashlibs():
    import hashlib

    from meshpcap._native import sha256_hex

    for data in (b"", b"int x;\n", bytes(range(256)) * 300):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()
