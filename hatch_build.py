"""Build hook: compile the optional C helpers of the hot path.

- meshpcap/capture/_walk.c: the record-header walks (twin: pcap.py, pcapng.py)
- meshpcap/decode/_headers.c: header decoding of common packets (twin: decode/frames.py)
- meshpcap/flows/_group.c: grouping a batch by 5-tuple, the flow builder's per-batch steps, the Evidence rows
  of the payloads it keeps, and a TCP flow's two streams when they are in order (twins: flows/engine.py
  _groups_numpy, FlowBuilder's *_numpy steps, _evidence_items_py; flows/naming.py reassemble)
- meshpcap/decode/_media.c: the media facts of a batch (RTP/RTCP, STUN, TCP SYNs and first payloads; twin:
  decode/rtp.py batch_media_numpy)
- meshpcap/decode/_tls.c: the walk of a well-formed ClientHello and a TLS 1.3 server's first flight (twins:
  decode/tls.py _parse_client_hello_body, read_server_flight)
- meshpcap/decode/_dns.c: DNS messages in their usual shape (twin: decode/dns.py parse_dns)

The package works without them (their Python twins give the same results), so a machine
without a C compiler still installs; the build only says so.  An editable install gets the
modules in the source tree (gitignored), a wheel gets them packed in.  Each module carries the
hash of the source it was built from (SOURCE_HASH); meshpcap._native ignores a module whose
source has changed since.  Set MESHPCAP_NO_EXTENSION=1 to build without them.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

MODULES = ("meshpcap/capture/_walk", "meshpcap/decode/_headers", "meshpcap/flows/_group", "meshpcap/decode/_media",
           "meshpcap/decode/_tls", "meshpcap/decode/_dns")  # each built from MODULE + ".c"


def source_hash(text: bytes) -> str:
    """What meshpcap._native.source_hash computes of the same file."""
    return hashlib.sha256(text).hexdigest()[:16]


def compile_extension(root: Path, source: Path, out: Path) -> str | None:
    """Compile ``source`` into the shared library ``out``; the compiler's complaint on failure."""
    ldshared = sysconfig.get_config_var("LDSHARED")
    include = sysconfig.get_paths().get("include")
    if not ldshared or not include:
        return "this Python has no recorded way to link extension modules"
    digest = source_hash(source.read_bytes())
    cmd = [*shlex.split(ldshared), "-O2", "-fPIC", "-Wall", f"-I{include}", f'-DMESHPCAP_SOURCE_HASH="{digest}"',
           str(source), "-o", str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cmd[0]}: {exc}"
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip().splitlines()[-1] if (done.stderr or done.stdout) else "failed"
    return None


def compile_bytecode(package: Path) -> None:
    """Write the package's bytecode beside its sources, as pip does when it installs a wheel.

    An editable install runs the source tree, whose modules Python would otherwise compile at
    every start when it may not write bytecode (PYTHONDONTWRITEBYTECODE=1, a read-only checkout):
    about 0.15 s of each run for the 51 modules `analyze` imports.  A module edited later is
    compiled from its source again (the bytecode records the source's time and size)."""
    import compileall

    try:
        compileall.compile_dir(str(package), quiet=2, workers=1)
    except OSError as exc:  # a read-only tree: every run compiles, as before
        print(f"meshpcap: bytecode not written ({exc})", file=sys.stderr)


class CustomBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        if version == "editable":
            compile_bytecode(Path(self.root) / "meshpcap")
        if os.environ.get("MESHPCAP_NO_EXTENSION"):
            return
        root = Path(self.root)
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        tmp = None if version == "editable" else Path(tempfile.mkdtemp(prefix="meshpcap-build-"))
        built = []
        for module in MODULES:
            out = root / (module + suffix) if tmp is None else tmp / (Path(module).name + suffix)
            out.unlink(missing_ok=True)  # an earlier in-place build must not outlive a failed one
            problem = compile_extension(root, root / (module + ".c"), out)
            if problem:
                print(f"meshpcap: building without {module}.c ({problem}); its pure-Python twin "
                      "does the same work, more slowly", file=sys.stderr)
                continue
            built.append((out, module + suffix))
        if not built:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if tmp is not None:
            for out, target in built:
                build_data["force_include"][str(out)] = target
