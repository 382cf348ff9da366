"""CLI command of the batch stage: `photosieve score` (a resumable backlog scan, thin wrapper)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.config import Workdir


def score(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="A folder of photos (recursive) or a CSV/Parquet manifest."
    ),
    bundle: Path | None = typer.Option(
        None, help="Model bundle folder [default: <workdir>/bundle]."
    ),
    out: Path = typer.Option(..., help="Parquet file to write (path, score, decision, error)."),
    engine: str = typer.Option("local", help="local (worker processes) or ray (Ray Data)."),
    chunk_size: int = typer.Option(2048, help="Photos per resumable chunk."),
    batch_size: int = typer.Option(32, help="Photos per onnxruntime batch."),
    workers: int | None = typer.Option(
        None, help="Decoding processes (local) or actors (ray) [default: CPU cores]."
    ),
    ray_address: str | None = typer.Option(
        None, help="Join an existing Ray cluster ('auto', 'ray://host:10001') [default: local]."
    ),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
) -> None:
    """Score every photo of a folder or manifest; a killed run continues where it stopped."""
    from photosieve.batch.job import BacklogConfig, score_backlog
    from photosieve.batch.sources import count_photos

    console = make_console()
    try:
        cfg = BacklogConfig(chunk_size=chunk_size, batch_size=batch_size, engine=engine,
                            workers=workers, ray_address=ray_address)  # fmt: skip
        total = count_photos(source)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("scoring", total=total, rate="")

        def on_progress(done: int, scored: int, seconds: float) -> None:
            rate = scored / seconds if seconds > 0 else 0.0
            bar.update(task, completed=done, rate=f"{rate:,.0f} photos/s")

        try:
            summary = score_backlog(source, bundle or Workdir.of(workdir).bundle, out, cfg,
                                    on_progress=on_progress)  # fmt: skip
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    table = Table(title=f"photosieve score → {out}")
    for col in ("photos", "failed", "scored now", "resumed chunks", "seconds", "photos/s"):
        table.add_column(col, justify="right")
    rate = summary.scored_now / summary.seconds if summary.seconds else 0.0
    cells = (summary.photos, summary.failed, summary.scored_now, summary.resumed_chunks)
    table.add_row(*(f"{c:,}" for c in cells), f"{summary.seconds:,.1f}", f"{rate:,.1f}")
    console.print(table)
    console.print("by decision: " + ", ".join(f"{k} {v:,}" for k, v in
                                              sorted(summary.by_decision.items())))  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("score")(score)
