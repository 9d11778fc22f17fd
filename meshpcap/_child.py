"""Run a piece of work beside the caller in a forked child process, with a pipe back.

The one place that forks, sets up the pipe, and kills and reaps the child; used by the
two-process capture reader (capture/parallel.py) and by naming (flows/naming.py).  The child
never returns into the caller's code: it runs ``work(write_fd)`` and leaves with ``os._exit``
(exit 1 on any exception), so the caller's ``finally`` blocks, buffers and atexit handlers run
once, in the caller.  Whether to fork at all is :func:`can_fork` (MESHPCAP_NO_FORK, one CPU,
no fork on this system).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, BinaryIO, Callable, Iterator

from meshpcap import settings

try:
    import fcntl
except ImportError:  # Windows: no fork either
    fcntl = None  # type: ignore[assignment]

F_SETPIPE_SZ = 1031  # Linux fcntl


def cpus() -> int:
    """CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def can_fork() -> bool:
    """Is running work beside the caller possible and worth it (a spare CPU, not switched off)?"""
    return hasattr(os, "fork") and not settings.get().no_fork and cpus() >= 2


@contextmanager
def beside(work: Callable[..., object], pipe_bytes: int | None = None, back: bool = False) -> Iterator[Any]:
    """Fork a child that runs ``work(write_fd)``; yield the unbuffered read end of its pipe, or None when
    no child could be started (no descriptor for the pipe, or no process to spare: fork(2)'s EAGAIN
    under a process limit, ENOMEM), for the caller to do the work itself.

    On leaving the block the child is killed (if it still runs) and reaped, whatever the
    caller read.  ``pipe_bytes`` asks Linux for a larger pipe (fewer, larger transfers).  With
    ``back``, a second pipe runs the other way: the child runs ``work(write_fd, back_read_fd)`` and
    the block gets (read end, ``back_write_fd``), or None; a write there once the child has ended
    fails with an OSError (EPIPE) for the caller to ignore."""
    try:
        rfd, wfd = os.pipe()
    except OSError:
        yield None
        return
    back_r = back_w = -1
    if back:
        try:
            back_r, back_w = os.pipe()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            yield None
            return
    if pipe_bytes and fcntl is not None:
        try:
            fcntl.fcntl(wfd, F_SETPIPE_SZ, pipe_bytes)
        except OSError:
            pass
    try:
        pid = os.fork()
    except OSError:
        for fd in (rfd, wfd, back_r, back_w):
            if fd >= 0:
                os.close(fd)
        yield None
        return
    if pid == 0:  # the child: do the work, never return into the caller's code
        code = 1
        try:
            os.close(rfd)
            if back:
                os.close(back_w)
                work(wfd, back_r)
            else:
                work(wfd)
            code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(wfd)
    if back:
        os.close(back_r)
    try:
        with os.fdopen(rfd, "rb", buffering=0) as pipe:
            yield (pipe, back_w) if back else pipe
    finally:
        if back:
            os.close(back_w)
        reap(pid)


def reap(pid: int) -> None:
    """End the child (if it still runs) and collect it."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def write_all(fd: int, data: object) -> None:
    """Write every byte of ``data`` (bytes or a buffer) to ``fd``."""
    buf = memoryview(data).cast("B")
    while buf:
        buf = buf[os.write(fd, buf):]


def read_exact(f: BinaryIO, n: int, writable: bool = False) -> bytes | bytearray | None:
    """Exactly ``n`` bytes from an unbuffered pipe, or None at its end."""
    buf = bytearray(n)
    if not fill(f, buf):
        return None
    return buf if writable else bytes(buf)


def fill(f: BinaryIO, buf) -> bool:
    """Read from an unbuffered pipe until the writable buffer ``buf`` is full; False at the pipe's end."""
    view = memoryview(buf).cast("B")
    got, n = 0, view.nbytes
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            return False
        got += k
    return True
