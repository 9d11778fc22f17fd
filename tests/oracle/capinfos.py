"""Run capinfos as an oracle for packet counts (without a shell; the path cannot become an option)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from tests.oracle.tshark import file_arg

CAPINFOS = shutil.which("capinfos")


def count(path: Path, timeout: int = 120) -> tuple[int, bool]:
    """(packets capinfos reads, whether it read the whole file without an error as a pcap or
    pcapng capture; Wireshark also reads JSON, text and other formats, which meshpcap does not)."""
    res = subprocess.run([CAPINFOS, "-M", "-c", "-t", "--", file_arg(path)], capture_output=True, text=True,
                         timeout=timeout)
    m = re.search(r"Number of packets:\s+(\d+)", res.stdout) or re.search(r"after reading (\d+) packets", res.stderr)
    kind = re.search(r"File type:\s+(.*)", res.stdout)
    pcap = kind is not None and re.match(r"pcap(ng)?\b", kind[1]) is not None  # -M: machine-readable names
    return (int(m[1]) if m else 0), pcap and res.returncode == 0 and m is not None and "error" not in res.stderr.lower()
