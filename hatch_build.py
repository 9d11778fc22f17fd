"""Build hook: compile meshpcap/capture/_walk.c, the optional record-header walker.

The package works without it (pcap.py and pcapng.py carry the same walks in Python), so a
machine without a C compiler still installs; the build only says so.  An editable install
gets the module in the source tree (gitignored), a wheel gets it packed in.  Set
MESHPCAP_NO_EXTENSION=1 to build without it.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("meshpcap") / "capture" / "_walk.c"
MODULE = "meshpcap/capture/_walk"


def compile_extension(root: Path, out: Path) -> str | None:
    """Compile SOURCE into the shared library ``out``; the compiler's complaint on failure."""
    ldshared = sysconfig.get_config_var("LDSHARED")
    include = sysconfig.get_paths().get("include")
    if not ldshared or not include:
        return "this Python has no recorded way to link extension modules"
    cmd = [*shlex.split(ldshared), "-O2", "-fPIC", "-Wall", f"-I{include}", str(root / SOURCE), "-o", str(out)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cmd[0]}: {exc}"
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip().splitlines()[-1] if (done.stderr or done.stdout) else "failed"
    return None


class CustomBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("MESHPCAP_NO_EXTENSION"):
            return
        root = Path(self.root)
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        if version == "editable":
            out = root / (MODULE + suffix)
        else:
            out = Path(tempfile.mkdtemp(prefix="meshpcap-build-")) / ("_walk" + suffix)
        problem = compile_extension(root, out)
        if problem:
            print(f"meshpcap: building without the compiled record walker ({problem}); "
                  "captures are read by the pure-Python walk, about 2x slower", file=sys.stderr)
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][str(out)] = MODULE + suffix
