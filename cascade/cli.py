"""The `cascade` command: the root Typer app, each area's Typer merged in with add_typer.

Each area keeps its commands in cascade/commands/<area>.py (its own Typer); the error boundary and
shared options live in cascade/commands/common.py and options.py. Registration is explicit: importing
any command module first cannot drop commands.
"""

from __future__ import annotations

import logging
import sys

import typer

from cascade.commands import asr, batch, ger, serve, system, train, tts

app = typer.Typer(
    name="cascade",
    help="Whisper N-best recognition, LLM correction, replies and speech.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


for _area in (asr, batch, ger, serve, system, train, tts):
    app.add_typer(_area.app, name=getattr(_area, "GROUP", None))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
