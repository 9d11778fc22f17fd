"""The console script and ``python -m meshpcap`` go through meshpcap.__main__ (collector off first)."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_is_the_main_module():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["meshpcap"] == "meshpcap.__main__:main"


def test_python_dash_m_meshpcap_runs_a_command_with_the_collector_off():
    probe = ("import gc, sys, meshpcap.__main__ as m, meshpcap.cli as cli\n"
             "seen = []\n"
             "cli.main = lambda: seen.append(gc.isenabled())\n"
             "m.main()\n"
             "print(seen)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[False]"
    res = subprocess.run([sys.executable, "-m", "meshpcap", "analyze", "samples/healthy-multi-room.pcapng",
                          "--format", "json"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["verdict"] == "pass"


PROBE_BLAS = """
import os, sys, types
fake = types.ModuleType("meshpcap.cli")  # the CLI's stand-in: numpy is first imported after main() began
def main():
    import numpy
    tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else None
    print(os.environ.get("OPENBLAS_NUM_THREADS"), tasks, "numpy" in sys.modules)
fake.main = main
sys.modules["meshpcap.cli"] = fake
import meshpcap.__main__ as m
assert "numpy" not in sys.modules
m.main()
"""


def test_the_cli_asks_numpy_s_openblas_for_no_threads_unless_the_user_chose():
    """OpenBLAS starts a spinning thread per further CPU when numpy is imported; the CLI asks for none
    before numpy is imported (one thread in the process: the interpreter's), and leaves a user's choice."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", PROBE_BLAS], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=env).stdout.split()
    assert out[0] == "1" and out[2] == "True"
    if out[1] != "None":
        assert out[1] == "1", f"{out[1]} threads after importing numpy"
    env["OPENBLAS_NUM_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", PROBE_BLAS], capture_output=True, text=True, check=True, cwd=ROOT,
                         env=env).stdout.split()
    assert out[0] == "3"
