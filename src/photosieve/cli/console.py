"""The one Rich console factory of the commands: full-width tables when output is not a terminal.

Rich lays out for 80 columns when stdout is a pipe or a log file, so wide tables (ingest, split,
evaluate) would be cut or wrapped there. Commands call `console()` instead of `Console()`.
"""

from __future__ import annotations

import sys

from rich.console import Console

# Wide enough for every table the commands print; tables do not expand to fill it.
LOG_WIDTH = 200


def console() -> Console:
    """A console for the command's output: the terminal's width, or `LOG_WIDTH` when redirected."""
    if sys.stdout.isatty():
        return Console()
    return Console(width=LOG_WIDTH, soft_wrap=False)
