"""The `photosieve` console command: one Typer app; each stage registers its thin commands.

Commands live beside their stage's name (`cli/embed.py`, `cli/data.py`, ...); each module has a
`register(app)` that adds its commands. Commands only parse arguments, call the library and
print Rich tables. The one place function-level imports are the rule: a command imports the
heavy part of its stage (torch, onnxruntime, the service app, Ray) when it runs, so
`photosieve --help` and the light commands start without loading them. Library code imports at
module level (checked by the import-linter contract), except optional extras (`batch` → Ray).
"""

from __future__ import annotations

import typer

from photosieve.cli import (
    bank,
    batch,
    capacity,
    data,
    db,
    demo,
    embed,
    feedback,
    learn,
    policy,
    production,
    registry,
    serve,
)

app = typer.Typer(
    name="photosieve",
    help="Moderate avatar photos: ingest → split → embed → train → calibrate → evaluate → serve.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


@app.command()
def version() -> None:
    """Print photosieve's version."""
    from photosieve import __version__

    typer.echo(__version__)


for _module in (
    embed, data, learn, policy, batch, serve, feedback, registry, production, capacity, demo, db,
    bank,
):  # fmt: skip
    _module.register(app)
