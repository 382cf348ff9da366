"""CLI commands of the feedback stage: `feedback export` (reviewers' labels → manifest)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import open_database, settings_for
from photosieve.config import Workdir

feedback_app = typer.Typer(help="Reviewers' decisions → labelled data.", no_args_is_help=True)


@feedback_app.command("export")
def export(
    out: Path | None = typer.Option(
        None,
        help="Manifest to write (feed it to `ingest`) [default: <workdir>/feedback/labels.csv].",
    ),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
) -> None:
    """Write every standing human decision as a labelled manifest for retraining."""
    from photosieve.feedback.export import export_labels

    settings = settings_for(workdir)
    out = out or Workdir(settings.workdir).feedback_labels
    with open_database(workdir) as session:
        summary = export_labels(session, settings.photo_store(), out)
    table = Table(title=f"labels from reviewers → {out}")
    table.add_column("review kind")
    table.add_column("photos", justify="right")
    for kind, count in sorted(summary.by_kind.items()):
        table.add_row(kind, f"{count:,}")
    table.add_row("total", f"{summary.rows:,} ({summary.offensive:,} offensive)")
    console = make_console()
    console.print(table)
    if summary.missing_files:
        console.print(f"[yellow]{summary.missing_files} decided uploads have no stored photo[/]")
    console.print(
        "Only `audit` rows are a uniform random sample of production; the others were chosen "
        f"by the model. Next: photosieve ingest {out}"
    )


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.add_typer(feedback_app, name="feedback")
