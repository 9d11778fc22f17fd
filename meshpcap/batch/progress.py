"""The batch's progress display: rich on a terminal, tqdm or rich in Jupyter, a callable, or none."""

from __future__ import annotations

import sys
import time

class _Progress:
    """A progress display for the batch: rich on a terminal's stderr, tqdm.auto's widget in
    Jupyter, a callable given by the caller, or nothing.  The bar measures bytes of captures done
    (``sizes``: each capture's file size), so the time left weighs a large capture as it should;
    captures done and their rate are shown beside it."""

    def __init__(self, progress, total: int, sizes: list[int] | None = None) -> None:
        self.total = total
        self.sizes = sizes
        self.total_bytes = sum(sizes) if sizes else 0
        self.done = 0
        self.callback = None
        self.bar = None
        self.kind = None
        self.progress = progress

    def start(self) -> "_Progress":
        """Show the display (after the worker processes are forked: its thread must not be
        copied into them)."""
        progress, total = self.progress, self.total
        if self.kind is not None or self.callback is not None:
            return self
        if callable(progress):
            self.callback = progress
            return self
        if progress is False or total == 0:
            return self
        jupyter = _in_jupyter()
        if jupyter:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, unit="capture", desc="meshpcap batch")
                self.kind = "tqdm"
                return self
            except ImportError:
                pass  # rich draws in the notebook too
        elif progress is None and not _isatty(sys.stderr):
            return self
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn
        from rich.progress import TimeRemainingColumn

        console = Console(force_jupyter=True) if jupyter else Console(file=sys.stderr)
        self.bar = Progress(TextColumn("meshpcap batch"), BarColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[captures]}"), DownloadColumn(), TextColumn("{task.fields[rate]}"),
                            TimeRemainingColumn(), console=console,
                            transient=not jupyter,
                            # lines printed meanwhile go above the bar only when they go to the same
                            # terminal; `batch ... > out.txt` keeps them in the file
                            redirect_stdout=jupyter or _isatty(sys.stdout), redirect_stderr=False)
        self.bar.start()
        self.task = self.bar.add_task("audit", total=self.total_bytes or total, rate="",
                                      captures=f"0/{total} captures")
        self.began = time.monotonic()
        self.kind = "rich"
        return self

    def advance(self, row: dict, index: int | None = None) -> None:
        self.start()
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total, row)
        elif self.kind == "tqdm":
            self.bar.update(1)
        elif self.kind == "rich":
            rate = self.done / max(time.monotonic() - self.began, 1e-9)
            step = self.sizes[index] if self.total_bytes and index is not None else (0 if self.total_bytes else 1)
            self.bar.update(self.task, advance=step, rate=f"{rate:.1f} captures/s",
                            captures=f"{self.done}/{self.total} captures")

    def print(self, line: str) -> None:
        """A line on standard output (rich's bar redirects it above itself)."""
        print(line, flush=True)

    def close(self) -> None:
        if self.kind == "rich":
            self.bar.stop()
        elif self.kind == "tqdm":
            self.bar.close()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def _in_jupyter() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"
