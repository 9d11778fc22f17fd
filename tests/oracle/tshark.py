"""Run tshark as an oracle: its conversation tables and its TLS/QUIC server names."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

TSHARK = shutil.which("tshark")


def file_arg(path) -> str:
    """A capture path as an argument no program can take for an option: absolute, so it never
    starts with '-' (a capture named ``-r`` or ``--foo``).  Programs run without a shell."""
    return str(Path(path).resolve())


def _endpoint(text: str) -> tuple[str, int]:
    addr, port = text.rsplit(":", 1)
    return addr, int(port)


def conversations(path: Path, timeout: int = 300) -> Counter:
    """Counter of (transport, endpoint pair, total frames) from ``tshark -z conv,tcp -z conv,udp``."""
    out = subprocess.run(
        [TSHARK, "-q", "-n", "-r", file_arg(path), "-z", "conv,tcp", "-z", "conv,udp"],
        capture_output=True, text=True, timeout=timeout,
    ).stdout
    convs: Counter = Counter()
    transport = None
    for line in out.splitlines():
        if line.startswith("TCP Conversations"):
            transport = "tcp"
        elif line.startswith("UDP Conversations"):
            transport = "udp"
        elif "<->" in line and transport:
            parts = line.split()
            a, b = _endpoint(parts[0]), _endpoint(parts[2])
            total = int(parts[9])
            convs[(transport, frozenset((a, b)) if a != b else frozenset((a,)), total)] += 1
    return convs


def ours(flow_table) -> Counter:
    convs: Counter = Counter()
    for f in flow_table.flows:
        if f.transport not in ("tcp", "udp"):
            continue
        a, b = (f.client, f.client_port), (f.server, f.server_port)
        convs[(f.transport, frozenset((a, b)) if a != b else frozenset((a,)), f.packets_c2s + f.packets_s2c)] += 1
    return convs
