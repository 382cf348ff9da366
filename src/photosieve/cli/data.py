"""CLI commands of the data stage (thin: parse, call the library, print a table)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
