"""Run a piece of work beside the caller in a forked child process, with a pipe back.

The one place that forks, sets up the pipe, and kills and reaps the child; used by the
two-process capture reader (capture/parallel.py) and by naming (flows/naming.py).  The child
never returns into the caller's code: it runs ``work(write_fd)`` and leaves with ``os._exit``
(exit 1 on any exception), so the caller's ``finally`` blocks, buffers and atexit handlers run
once, in the caller.  Whether to fork at all is :func:`can_fork` (MESHPCAP_NO_FORK, one CPU,
no fork on this system).
"""

from __future__ import annotations

import importlib
import mmap
import os
import pickle
import select
import struct
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
    pipes = _pipes(2 if back else 1)
    if pipes is None:
        yield None
        return
    (rfd, wfd), (back_r, back_w) = pipes[0], pipes[1] if back else (-1, -1)
    _larger((wfd,), pipe_bytes)
    pid = _fork(pipes)
    if pid is None:
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


def _pipes(n: int) -> list[tuple[int, int]] | None:
    """``n`` pipes (read end, write end), or None when no descriptor is left for one (those made are closed)."""
    made: list[tuple[int, int]] = []
    try:
        for _ in range(n):
            made.append(os.pipe())
    except OSError:
        for r, w in made:
            os.close(r)
            os.close(w)
        return None
    return made


def _larger(fds: tuple[int, ...], pipe_bytes: int | None) -> None:
    """Ask Linux for pipes of ``pipe_bytes`` (fewer, larger transfers) where asked for; as they are otherwise."""
    if pipe_bytes and fcntl is not None:
        for fd in fds:
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, pipe_bytes)
            except OSError:
                pass


def _fork(pipes: list[tuple[int, int]]) -> int | None:
    """os.fork(), or None when no process can be had (EAGAIN under a process limit, ENOMEM): the pipes closed."""
    try:
        return os.fork()
    except OSError:
        for r, w in pipes:
            os.close(r)
            os.close(w)
        return None


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


def fill_wait(pipe: BinaryIO, idle: Callable[[], bool]) -> None:
    """Call ``idle`` while the pipe has nothing to read, until it says it has nothing more to do: the time
    this process would wait for the child goes to the caller's own work instead, a small piece at a time,
    so that what comes waits little."""
    fd = pipe.fileno()
    while not select.select([fd], [], [], 0)[0]:
        if not idle():
            return


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


# ---------------------------------------------------------------- a child forked early, given its work later
_HEAD = struct.Struct("<QQ")  # a message's pickle length, its number of buffers
_SIZE = struct.Struct("<Q")
_JOINED_BYTES = 1 << 16  # buffers smaller than this are copied into one write with their neighbours


def send(fd: int, obj: object) -> None:
    """Write ``obj`` to ``fd`` as one message for :func:`receive`: its pickle, with the large contiguous
    buffers it holds (numpy arrays) written after it as they are, not copied into the pickle first
    (pickle protocol 5, PEP 574)."""
    buffers: list = []
    body = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    parts = [_HEAD.pack(len(body), len(raws)), *(_SIZE.pack(r.nbytes) for r in raws), body]
    for r in raws:  # small buffers go with what precedes them: one write, not one each
        if r.nbytes < _JOINED_BYTES:
            parts.append(r)
            continue
        write_all(fd, b"".join(parts))
        parts = []
        write_all(fd, r)
    if parts:
        write_all(fd, b"".join(parts))


def receive(f: BinaryIO) -> object:
    """The next message :func:`send` wrote to the unbuffered pipe ``f`` (its arrays over buffers of their
    own, writable); EOFError at the pipe's end."""
    head = read_exact(f, _HEAD.size)
    if head is None:
        raise EOFError("the pipe ended before a message")
    n_body, n_buffers = _HEAD.unpack(head)
    sizes = read_exact(f, _SIZE.size * n_buffers) if n_buffers else b""
    body = read_exact(f, n_body)
    if sizes is None or body is None:
        raise EOFError("the pipe ended inside a message")
    buffers = []
    for (n,) in _SIZE.iter_unpack(sizes):
        buf = bytearray(n)
        if not fill(f, buf):
            raise EOFError("the pipe ended inside a message")
        buffers.append(buf)
    return pickle.loads(body, buffers=buffers)


class Spare:
    """A child forked now, while this process is still small, that waits for one piece of work sent later
    (:func:`handed`).  A child forked late from a large process shares every page of it: each page either
    process then writes is copied, at a fault each (at 1M packets, forking the media child after the read
    cost the naming, judging and writing here about 11,000 such faults).  This one shares only the pages
    of the process as it was when forked.  Close it (kill and reap) when done, used or not."""

    __slots__ = ("pid", "jobs", "results", "shared")

    def __init__(self, pid: int, jobs: int, results: BinaryIO, shared: mmap.mmap | None) -> None:
        self.pid = pid
        self.jobs = jobs  # the write end of the pipe the child reads its work from
        self.results = results  # the read end of the pipe it answers on
        self.shared = shared  # memory both see (its pages as this process fills them), or None

    def take(self) -> "Spare | None":
        """This child for one owner, who closes it: closing this object afterwards leaves it be."""
        if self.pid < 0:
            return None
        owned = Spare(self.pid, self.jobs, self.results, self.shared)
        self.pid = -1
        return owned

    def close(self) -> None:
        if self.pid < 0:
            return
        pid, self.pid = self.pid, -1
        self.shared = None  # unmapped once no array over it is left
        for close in (lambda: os.close(self.jobs), self.results.close):
            try:
                close()
            except OSError:
                pass
        reap(pid)


def address_space_limited() -> bool:
    """Does this process run under an address-space limit (``RLIMIT_AS``, as a batch audit's worker does)?"""
    try:
        import resource
    except ImportError:  # not on this system
        return False
    try:
        return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY
    except (OSError, ValueError):
        return False


def spare(pipe_bytes: int | None = None, shared_bytes: int = 0, preload: tuple[str, ...] = ()) -> Spare | None:
    """A :class:`Spare` child, or None when none can be had (see :func:`can_fork`; no pipe or process).
    ``pipe_bytes`` asks Linux for larger pipes both ways; ``shared_bytes``, memory that both processes see
    (``Spare.shared``, None when it cannot be had), where this process can put what the child is to read
    without sending it: pages are taken only as they are written.  The child imports the modules of
    ``preload`` while it waits for its work (one that fails is left to the work's own import)."""
    if not can_fork():
        return None
    shared = None
    if shared_bytes > 0:
        try:
            shared = mmap.mmap(-1, shared_bytes, flags=mmap.MAP_SHARED)
        except (OSError, ValueError, OverflowError):
            shared = None
    pipes = _pipes(2)
    if pipes is None:
        return None
    (job_r, job_w), (res_r, res_w) = pipes
    _larger((job_w, res_w), pipe_bytes)
    pid = _fork(pipes)
    if pid is None:
        return None
    if pid == 0:  # the child: wait for the work, do it, never return into the caller's code
        code = 1
        try:
            os.close(job_w)
            os.close(res_r)
            for name in preload:
                try:
                    importlib.import_module(name)
                except Exception:
                    pass
            with os.fdopen(job_r, "rb", buffering=0) as jobs:
                try:
                    work, args = receive(jobs)
                except EOFError:  # closed unused
                    code = 0
                else:
                    work(res_w, lambda: receive(jobs), shared, *args)
                    code = 0
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(job_r)
    os.close(res_w)
    return Spare(pid, job_w, os.fdopen(res_r, "rb", buffering=0), shared)


@contextmanager
def handed(spare_: Spare, work: Callable[..., object], *args: object) -> Iterator[tuple[BinaryIO, Callable[[object], None]] | None]:
    """Give ``spare_`` its work: it runs ``work(write_fd, receive_next, shared, *args)`` (``shared``: its
    ``Spare.shared``; ``args`` pickled, their arrays as buffers: :func:`send`), as :func:`beside`'s child runs
    its work.  Yield (the read end of its pipe, ``send_next``), where ``send_next(obj)`` is what
    ``receive_next()`` returns there (an OSError when the child has ended, for the caller to ignore); or None
    when the work could not be sent (the child has ended, or the work or its arguments do not pickle), for the
    caller to do it itself.  The child is ended and reaped when the block ends, as :func:`beside`'s."""
    try:
        send(spare_.jobs, (work, args))
    except Exception:  # the child has ended (OSError), or the work does not pickle: nothing was written then
        spare_.close()
        yield None
        return
    try:
        yield spare_.results, lambda obj: send(spare_.jobs, obj)
    finally:
        spare_.close()
