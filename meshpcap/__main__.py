"""``meshpcap`` (the console script) and ``python -m meshpcap``: the CLI of :mod:`meshpcap.cli`.

The collector is turned off before anything is imported: the CLI runs one command and leaves with
``os._exit`` (see :func:`meshpcap.cli.main`), and importing typer and the pipeline makes tens of
thousands of objects that the cyclic collector would otherwise walk several times over.
"""

import gc


def main() -> None:
    gc.disable()
    from meshpcap.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
