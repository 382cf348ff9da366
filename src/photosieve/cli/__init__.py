"""The `photosieve` console command: one Typer app; each stage registers its thin commands.

Commands live beside their stage's name (`cli/embed.py`, `cli/data.py`, ...); each module has a
`register(app)` that adds its commands. Commands only parse arguments, call the library and
print Rich tables.
"""

from __future__ import annotations

import typer

from photosieve.cli import batch, capacity, data, db, demo, embed, feedback, learn, policy, serve

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


for _module in (embed, data, learn, policy, batch, serve, feedback, capacity, demo, db):
    _module.register(app)
