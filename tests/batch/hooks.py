"""Per-capture functions for the batch tests: a file whose bytes begin with CRASH, HANG or
EATMEM makes the audit crash, hang or exhaust memory; anything else is audited for real."""

from __future__ import annotations

import os
import signal
import time

from meshpcap.batch import audit_one


def hostile_audit(path, options, *, sha256=None, size=None):
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"CRASH"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if head.startswith(b"HANG"):
        time.sleep(120)
    if head.startswith(b"EATMEM"):
        hoard = []
        while True:  # as a decompression bomb or a runaway table would
            hoard.append(bytearray(64 << 20))
    return audit_one(path, options, sha256=sha256, size=size)



def counting_audit(path, options, *, sha256=None, size=None):
    """audit_one, counting calls in this process (jobs=1 runs it in a forked child, so the count
    is written to a file named by MESHPCAP_TEST_COUNT)."""
    with open(os.environ["MESHPCAP_TEST_COUNT"], "a") as f:
        f.write(os.fspath(path) + "\n")
    return audit_one(path, options, sha256=sha256, size=size)


def exhausting_audit(path, options, *, sha256=None, size=None):
    """audit_one with the reading stage exhausting memory to the last few bytes (small
    allocations until none succeeds), as a runaway table of many small objects would."""
    import meshpcap.pipeline as pipeline

    def greedy(*a, **k):
        hoard = []
        chunk = 16 << 20
        while chunk >= 64:
            try:
                hoard.append(bytearray(chunk))
            except MemoryError:
                chunk //= 2
        raise MemoryError

    pipeline.read_flows = greedy  # in the forked child only: it ends with the child
    return audit_one(path, options, sha256=sha256, size=size)
