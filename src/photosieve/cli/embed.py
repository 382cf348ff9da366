"""CLI commands of the embed stage (thin: parse, call the library, print a table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.config import DEFAULT_BACKBONE, Workdir


def embed(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="A folder of photos (recursive) or a manifest CSV."
    ),
    workdir: Path | None = typer.Option(None, help="Working folder (default ./work)."),
    batch_size: int = typer.Option(32, min=1, help="Photos per model call."),
    name: str | None = typer.Option(
        None, help="Name of the aligned output <workdir>/embeddings/<name>.npy."
    ),
    skip_bad: bool = typer.Option(
        False, help="Give unreadable photos NaN rows instead of stopping."
    ),
    backbone: str = typer.Option(DEFAULT_BACKBONE, help="Registered backbone to embed with."),
) -> None:
    """Embed photos with the backbone; cached, so unchanged photos cost nothing the second time."""
    from photosieve.vision.backbone import backbone_config, list_backbones
    from photosieve.vision.embed import embed_files, image_paths
    from photosieve.vision.preprocess import ImageDecodeError

    if backbone not in list_backbones():
        known = ", ".join(list_backbones())
        raise typer.BadParameter(f"unknown backbone {backbone!r}; known: {known}")
    root = Workdir.of(workdir).root
    try:
        paths = image_paths(source)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="SOURCE") from exc
    if not paths:
        raise typer.BadParameter(f"no photos found in {source}", param_hint="SOURCE")
    stats: dict[str, float] = {}
    try:
        vectors = embed_files(
            paths,
            workdir=root,
            batch_size=batch_size,
            backbone=backbone,
            on_error="nan" if skip_bad else "raise",
            stats=stats,
        )
    except ImageDecodeError as exc:
        typer.echo(f"error: {exc} (use --skip-bad to carry on past unreadable photos)", err=True)
        raise typer.Exit(1) from exc
    label = name or (source.parent.name if source.stem == "manifest" else source.stem)
    out_dir = Workdir(root).embeddings
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / f"{label}.npy", vectors)
    (out_dir / f"{label}.paths.txt").write_text("".join(f"{p}\n" for p in paths))

    seconds = max(stats["seconds"], 1e-9)
    computed = int(stats["computed"])
    table = Table(title=f"embed · {backbone_config(backbone).id}")
    table.add_column("images", justify="right")
    table.add_column("cached", justify="right")
    table.add_column("computed", justify="right")
    table.add_column("failed", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("images/s (computed)", justify="right")
    table.add_row(
        f"{int(stats['images']):,}",
        f"{int(stats['cached']):,}",
        f"{computed:,}",
        f"{int(stats['failed']):,}",
        f"{seconds:,.1f}",
        f"{computed / seconds:,.1f}" if computed else "—",
    )
    console = make_console()
    console.print(table)
    console.print(f"embeddings (input order): {out_dir / f'{label}.npy'}", soft_wrap=True)
    console.print(f"paths:                    {out_dir / f'{label}.paths.txt'}", soft_wrap=True)
    cache = out_dir / backbone_config(backbone).id
    console.print(f"cache:                    {cache}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("embed")(embed)
