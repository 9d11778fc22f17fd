"""meshpcap._child: the messages between processes, and the spare child forked early and given its work later."""

import os

import numpy as np
import pytest

from meshpcap import _child
from tests.conftest import fork_pids, reaped

needs_fork = pytest.mark.skipif(not _child.can_fork(), reason="no second process here (MESHPCAP_NO_FORK, one CPU or no fork)")


def _round_trip(obj):
    r, w = os.pipe()
    try:
        with os.fdopen(r, "rb", buffering=0) as f:
            # a writer in a thread: a message larger than the pipe would block a writer that is its own reader
            import threading

            t = threading.Thread(target=lambda: (_child.send(w, obj), os.close(w)))
            t.start()
            got = _child.receive(f)
            t.join()
            with pytest.raises(EOFError):
                _child.receive(f)
            return got
    finally:
        try:
            os.close(w)
        except OSError:
            pass


def test_a_message_carries_arrays_as_they_are():
    """Arrays large and small, empty, of every dtype the media rows use, and one that is not contiguous
    (pickled in the message, not as a buffer), come back equal and writable, in their places."""
    rng = np.random.default_rng(3)
    big = rng.integers(0, 1 << 62, 300_000, dtype=np.int64)  # larger than the pipe, and than _JOINED_BYTES
    big[0] = 5
    small = [np.arange(n).astype(dt) for n, dt in ((5, np.int32), (0, np.uint8), (17, np.uint16), (3, bool))]
    strided = np.arange(40, dtype=np.int64)[::3]
    obj = {"big": big, "small": small, "strided": strided, "text": "x" * 70_000, "n": 7}
    got = _round_trip(obj)
    assert np.array_equal(got["big"], big) and got["big"].dtype == big.dtype
    for a, b in zip(got["small"], small, strict=True):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert np.array_equal(got["strided"], strided)
    assert got["text"] == obj["text"] and got["n"] == 7
    assert got["big"].flags.writeable
    got["big"][0] = 1  # its own memory
    assert big[0] == 5


def test_a_message_cut_short_is_an_eof():
    r, w = os.pipe()
    whole = []
    import pickle

    body = pickle.dumps([np.arange(10)], protocol=5, buffer_callback=whole.append)
    os.write(w, _child._HEAD.pack(len(body), 1) + _child._SIZE.pack(80) + body + b"\0" * 20)  # 20 of the 80 bytes
    os.close(w)
    with os.fdopen(r, "rb", buffering=0) as f, pytest.raises(EOFError):
        _child.receive(f)


def _echo(wfd, receive_next, shared, first):
    """A spare's work: what it was sent, then the next message, then what is in the shared memory, and whether
    it had imported colorsys before the work came."""
    import sys

    had = "colorsys" in sys.modules
    second = receive_next()
    _child.send(wfd, (first, second, bytes(shared[:4]) if shared is not None else None, had))


@needs_fork
def test_a_spare_child_does_the_work_it_is_given(monkeypatch):
    """Forked first, given its work later (arguments pickled, a second message after), it answers on its pipe,
    sees the memory this process wrote after the fork, has imported what it was to preload (a name that
    cannot be imported left alone), and is ended and reaped when the block ends."""
    import sys

    sys.modules.pop("colorsys", None)
    pids = fork_pids(monkeypatch)
    spare = _child.spare(shared_bytes=1 << 20, preload=("no_such_module_here", "colorsys"))
    assert spare is not None and len(pids) == 1
    spare.shared[:4] = b"mesh"  # written after the fork
    with _child.handed(spare, _echo, np.arange(5)) as got:
        assert got is not None
        pipe, send_next = got
        send_next({"locator": 1})
        first, second, seen, had = _child.receive(pipe)
    assert np.array_equal(first, np.arange(5)) and second == {"locator": 1} and seen == b"mesh" and had
    assert reaped(pids[0])


@needs_fork
def test_a_spare_closed_unused_ends_and_taking_it_moves_who_closes_it(monkeypatch):
    pids = fork_pids(monkeypatch)
    spare = _child.spare()
    owned = spare.take()
    assert owned is not None and spare.take() is None
    spare.close()  # taken: closing the old handle leaves the child be
    assert not reaped(pids[0])
    owned.close()
    owned.close()  # once is enough; twice does nothing
    assert reaped(pids[0])


@needs_fork
def test_work_that_does_not_pickle_is_left_to_the_caller(monkeypatch):
    """A lambda (a notebook's renderer, say) cannot be sent: handed yields None, for the caller to do the
    work itself, and the spare is ended; so is a spare whose child has died."""
    pids = fork_pids(monkeypatch)
    spare = _child.spare()
    with _child.handed(spare, _echo, lambda: 1) as got:
        assert got is None
    assert reaped(pids[0])
    spare = _child.spare()
    os.kill(pids[1], 9)
    os.waitpid(pids[1], 0)
    big = np.zeros(1 << 20)  # more than the pipe holds: the write fails (EPIPE) rather than wait
    with _child.handed(spare, _echo, big) as got:
        assert got is None


def test_no_spare_where_no_child_can_be_had(monkeypatch):
    from meshpcap import settings

    with settings.override(no_fork=True):
        assert _child.spare() is None

    def refuse():
        raise OSError(11, "refused by the test")

    if _child.can_fork():
        monkeypatch.setattr(os, "fork", refuse)
        before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
        assert _child.spare(shared_bytes=1 << 16) is None
        if before is not None:
            assert len(os.listdir("/proc/self/fd")) == before


@needs_fork
def test_an_address_space_limit_is_seen():
    """A batch audit's worker runs under RLIMIT_AS: there the spare gets no shared memory (pipeline._media_spare)."""
    import resource

    if resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY:
        assert not _child.address_space_limited()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            resource.setrlimit(resource.RLIMIT_AS, (16 << 30, 16 << 30))
            os.write(w, b"1" if _child.address_space_limited() else b"0")
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        assert f.read() == b"1"
    os.waitpid(pid, 0)
