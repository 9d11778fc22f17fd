"""``meshpcap`` (the console script) and ``python -m meshpcap``: the CLI of :mod:`meshpcap.cli`.

The collector is turned off before anything is imported: the CLI runs one command and leaves with
``os._exit`` (see :func:`meshpcap.cli.main`), and importing typer and the pipeline makes tens of
thousands of objects that the cyclic collector would otherwise walk several times over.  numpy's
OpenBLAS is asked for no threads of its own (:func:`one_blas_thread`), before numpy is imported.
"""

import gc
import os


def one_blas_thread() -> None:
    """Unless the user chose a number: ``OPENBLAS_NUM_THREADS=1`` for this process (and those it starts).

    On import, numpy's OpenBLAS starts a thread for each further CPU, and each spins for a while before
    it sleeps (on a 2-CPU machine about 0.1 s of CPU per run, taken from the reading child and the
    media statistics); meshpcap does no linear algebra, so the threads would only ever spin."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def main() -> None:
    gc.disable()
    one_blas_thread()
    from meshpcap.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
