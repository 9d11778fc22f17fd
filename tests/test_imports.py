"""Start-up: what a run imports (structural, not timed). Each check runs in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, SAMPLES

HEAVY = ("pandas", "tabulate", "jinja2", "rich", "pydantic", "scapy", "cryptography")


def _modules(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _loaded(code: str) -> set[str]:
    return {m.split(".")[0] for m in _modules(code)}


def test_importing_the_cli_and_library_loads_nothing_heavy():
    loaded = _loaded("import meshpcap, meshpcap.cli, meshpcap.pipeline, meshpcap.report.analysis, meshpcap.report.compare")
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_analyze_to_json_does_not_load_pandas_or_tabulate(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))  # empty: the first run parses the TOML files
    out = tmp_path / "r.json"
    code = (f"import sys; sys.argv = ['meshpcap', 'analyze', {str(SAMPLES / 'healthy-multi-room.pcapng')!r}, '--format', "
            f"'json', '-o', {str(out)!r}]\nfrom meshpcap.cli import app\ntry:\n    app(standalone_mode=False)\n"
            "except SystemExit:\n    pass")
    first = _modules(code)  # parses the rule, targets and issuer files once, and keeps them parsed
    modules = _modules(code)
    loaded = {m.split(".")[0] for m in modules}
    assert "tomllib" in first and "tomllib" not in modules  # the second run needs no TOML parser (5% of it)
    assert json.loads(out.read_text())["schema"].startswith("meshpcap.report/")
    assert loaded.isdisjoint({"pandas", "tabulate", "jinja2", "rich", "pydantic"}), loaded
    # numpy.ma (6 ms) comes in through np.unique/np.isin's sorting path; nothing here needs masked arrays
    assert "numpy.ma" not in modules
    # the sample's TLS 1.2 server certificate is read by meshpcap.decode.x509, not cryptography (20 ms)
    assert "cryptography" not in loaded
    assert "meshpcap.capture.series" not in modules  # one file: no series to order or merge
    assert "socket" not in modules  # addresses are packed by _socket's inet_pton (socket.py's enums: 1 ms)
    assert any(f["cert_subject"] for f in json.loads(out.read_text())["flows"])


def test_analyze_with_a_known_tag_file_loads_no_openssl(tmp_path, monkeypatch):
    """hashlib and hmac load OpenSSL (about 2 ms): the second run hashes nothing with them (the tag file's
    hash is noted by its status, TOML texts and the compiled helpers' sources use the interpreter's own
    SHA-256, STUN integrity is checked only when asked)."""
    monkeypatch.setenv("MESHPCAP_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "r.json"
    tags = tmp_path / "ServiceTags_Public_20250101.json"
    tags.write_bytes((SAMPLES / "ServiceTags_Public_SAMPLE.json").read_bytes())
    code = ("import sys\nimport meshpcap.rules.tagcache as t\nt.SETTLED_NS = 0  # just written: note it anyway\n"
            f"sys.argv = ['meshpcap', 'analyze', {str(SAMPLES / 'relay-udp-dropped.pcapng')!r}, '--service-tags', "
            f"{str(tags)!r}, '--format', 'json', '-o', {str(out)!r}]\nfrom meshpcap.cli import app\ntry:\n"
            "    app(standalone_mode=False)\nexcept SystemExit:\n    pass")
    first = _modules(code)  # hashes the tag file once, writes its index and notes its hash
    assert "_hashlib" in first
    modules = _modules(code)
    assert json.loads(out.read_text())["service_tags"]["file"] == str(tags)
    assert any(f.get("stun") for f in json.loads(out.read_text())["flows"])  # STUN was parsed
    assert modules.isdisjoint({"hashlib", "_hashlib", "hmac"}), sorted(modules & {"hashlib", "_hashlib", "hmac"})
