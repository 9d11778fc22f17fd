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
