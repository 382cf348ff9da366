"""CLI commands of the data stage (thin: parse, call the library, print a table)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.config import CERTIFY, Workdir
from photosieve.data.dedupe import NEAR_DUPLICATE_DISTANCE
from photosieve.data.ingest import IngestResult, ingest
from photosieve.data.manifest import INGESTED_COLUMNS, read_manifest, write_manifest
from photosieve.data.plan import (
    MAX_CALIBRATION,
    MIN_TRAIN_POSITIVES,
    REST_RATIOS,
    WORKLOAD_TOLERANCE,
    parse_fractions,
)
from photosieve.data.split import SplitResult, split_manifest
from photosieve.records import MANIFEST_COLUMNS, Label


def _fail(console: Console, exc: ValueError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


def _beside(out: Path, tag: str) -> Path:
    return out.with_name(f"{out.stem}.{tag}{out.suffix}")


def _ingest_tables(console: Console, result: IngestResult) -> None:
    accepted, rejected = result.accepted, result.rejected
    table = Table(title="Ingest: accepted and rejected photos")
    for column in ("source", "accepted", "offensive", "ok", "rejected"):
        table.add_column(column, justify="left" if column == "source" else "right")
    sources = sorted(set(accepted["source"]) | set(rejected["source"]))
    for source in sources:
        part = accepted[accepted["source"] == source]
        n_pos = int((part["label"] == Label.OFFENSIVE.value).sum())
        n_rej = int((rejected["source"] == source).sum())
        table.add_row(
            source, f"{len(part):,}", f"{n_pos:,}", f"{len(part) - n_pos:,}", f"{n_rej:,}"
        )
    n_pos = int((accepted["label"] == Label.OFFENSIVE.value).sum())
    n_ok = len(accepted) - n_pos
    total = (f"{len(accepted):,}", f"{n_pos:,}", f"{n_ok:,}", f"{len(rejected):,}")
    table.add_row("total", *total, style="bold")
    console.print(table)
    if len(rejected):
        reasons = Table(title="Rejected, by reason")
        for column in ("reason", "photos", "example"):
            reasons.add_column(column, justify="right" if column == "photos" else "left")
        for reason, part in rejected.groupby("reason", sort=True):
            first = part.iloc[0]
            reasons.add_row(str(reason), f"{len(part):,}", f"{first['path']}: {first['detail']}")
        console.print(reasons)
    sizes = accepted.groupby("group_id").size()
    dup = Table(title="Duplicate groups (exact SHA-256 or near pHash)")
    for column in ("exact copies", "groups > 1 photo", "photos in them", "largest", "conflicting"):
        dup.add_column(column, justify="right")
    dup.add_row(
        f"{result.groups.exact_pairs:,}",
        f"{int((sizes > 1).sum()):,}",
        f"{int(sizes[sizes > 1].sum()):,}",
        f"{int(sizes.max()) if len(sizes) else 0}",
        f"{result.conflicts['group_id'].nunique() if len(result.conflicts) else 0}",
    )
    console.print(dup)
    if len(result.conflicts):
        conflicts = Table(title="Groups with conflicting labels (review these)")
        for column in ("group", "label", "source", "path"):
            conflicts.add_column(column)
        for _, row in result.conflicts.head(20).iterrows():
            conflicts.add_row(str(row["group_id"]), row["label"], row["source"], row["path"])
        console.print(conflicts)


def ingest_command(
    source: Path = typer.Argument(
        ..., metavar="SOURCE", help="A folder <root>/<label>/... or a .csv/.parquet."
    ),
    out: Path | None = typer.Option(
        None, help="Accepted rows [default: <workdir>/data/ingested.csv]."
    ),
    rejects: Path | None = typer.Option(None, help="Rejected rows [default: <out>.rejects]."),
    conflicts: Path | None = typer.Option(None, help="Label conflicts [<out>.conflicts]."),
    positive_name: str = typer.Option("offensive", help="Input label meaning offensive."),
    negative_name: str = typer.Option("ok", help="Input label meaning ok."),
    source_name: str | None = typer.Option(
        None, "--source", help="Source of every row, e.g. external:anime-forum."
    ),
    max_distance: int = typer.Option(
        NEAR_DUPLICATE_DISTANCE, help="Near-duplicate pHash distance (bits of 256)."
    ),
    workers: int | None = typer.Option(None, help="Decoding threads [default: CPU count]."),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
) -> None:
    """Validate, hash and group labelled photos; write accepted rows, rejects and conflicts."""
    console = make_console()
    out = out or Workdir.of(workdir).ingested
    out.parent.mkdir(parents=True, exist_ok=True)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("decoding + hashing", total=None)
        try:
            result = ingest(
                source,
                positive_name=positive_name,
                negative_name=negative_name,
                source_name=source_name,
                max_distance=max_distance,
                workers=workers,
                on_total=lambda n: progress.update(task, total=n),
                on_progress=lambda k: progress.advance(task, k),
            )
        except ValueError as exc:
            raise _fail(console, exc) from exc
    _ingest_tables(console, result)
    write_manifest(result.accepted, out, columns=INGESTED_COLUMNS)
    rejects = rejects or _beside(out, "rejects")
    conflicts = conflicts or _beside(out, "conflicts")
    _write_plain(result.rejected, rejects)
    _write_plain(result.conflicts, conflicts)
    console.print(f"wrote {out} ({len(result.accepted):,} rows)")
    console.print(f"wrote {rejects} ({len(result.rejected):,} rows)")
    console.print(f"wrote {conflicts} ({len(result.conflicts):,} rows)")


def _write_plain(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def _split_table(console: Console, result: SplitResult) -> None:
    table = Table(
        title=(
            f"Split (seed {result.seed}); certifying recall {result.target_recall:.1%} at "
            f"{result.confidence:.0%} confidence needs {result.positives_needed} positives"
        )
    )
    for column in ("split", "fraction", "photos", "positives", "share", "sources", "certifiable"):
        table.add_column(column, justify="left" if column in ("split", "sources") else "right")
    for _, row in result.summary.iterrows():
        sources = ", ".join(f"{k} {v:,}" for k, v in row["sources"].items())
        note = f" (short {row['shortfall']})" if row["shortfall"] else ""
        table.add_row(
            row["split"],
            f"{result.fractions[row['split']]:.3f}",
            f"{row['photos']:,}",
            f"{row['positives']:,}",
            f"{row['positive_share']:.2%}",
            sources,
            f"{row['certifiable_recall']:.2%}{note}",
        )
    console.print(table)
    for split, missing in result.shortfalls.items():
        console.print(
            f"[yellow]{split.value}: {missing} positives short of the {result.positives_needed} "
            f"needed to certify {result.target_recall:.1%} recall at {result.confidence:.0%}; "
            "it can certify the recall shown above at best.[/yellow]"
        )


def _plan_table(console: Console, result: SplitResult) -> None:
    """The planner's expected-workload curve over calibration sizes, its choice marked."""
    chosen = result.calibration_choice
    assert chosen is not None
    table = Table(
        title="Calibration size: expected certified review rate at 1% prevalence "
        "(q ~ Beta(k+1, n−k); binormal ROC with a learning-curve penalty)"
    )
    for column in (
        "positives",
        "misses allowed",
        "train positives",
        "exp. miss rate",
        "exp. review",
    ):
        table.add_column(column, justify="right")
    for o in result.calibration_curve:
        mark = " ◀" if o == chosen else ("" if o.feasible else " (too few to train)")
        table.add_row(
            f"{o.positives:,}",
            str(o.misses),
            f"{o.train_positives:,}",
            f"{o.expected_miss_rate:.4f}",
            f"{o.expected_review_rate:.2%}{mark}",
        )
    console.print(table)
    rest = ":".join(f"{ratio * 100:g}" for ratio in REST_RATIOS.values())
    console.print(
        f"Calibration gets {chosen.positives:,} positives ({chosen.misses} misses allowed): the "
        f"smallest size within {WORKLOAD_TOLERANCE:.0%} of the lowest expected review rate, "
        f"keeping ≥ {MIN_TRAIN_POSITIVES} training positives (at most {MAX_CALIBRATION:.0%} of "
        f"the photos); the rest goes train:train_dev:validation:test = {rest}. "
        "Pass --fractions to choose them yourself."
    )


def split_command(
    ingested: Path = typer.Argument(
        ..., metavar="INGESTED", help="Output of `photosieve ingest` (.csv/.parquet)."
    ),
    out: Path | None = typer.Option(
        None, help="Split manifest [default: <workdir>/data/split.csv]."
    ),
    seed: int = typer.Option(0, help="Seed of every random choice."),
    fractions: str | None = typer.Option(
        None,
        help="e.g. train=0.6,train_dev=0.05,validation=0.1,calibration=0.15,test=0.1 "
        "[default: planned: calibration sized by positives needed for the target].",
    ),
    target_recall: float = typer.Option(CERTIFY.target_recall, help="Recall to certify."),
    confidence: float = typer.Option(CERTIFY.confidence, help="Confidence of the guarantee."),
    external_in_train_dev: bool = typer.Option(
        True, help="train_dev mirrors the training mix, external photos included."
    ),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
) -> None:
    """Split ingested photos by duplicate group, stratified; write manifest + fingerprint."""
    console = make_console()
    out = out or Workdir.of(workdir).split
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        frame = read_manifest(ingested, columns=INGESTED_COLUMNS)
        result = split_manifest(
            frame,
            fractions=parse_fractions(fractions) if fractions else None,
            seed=seed,
            target_recall=target_recall,
            confidence=confidence,
            external_in_train_dev=external_in_train_dev,
        )
    except ValueError as exc:
        raise _fail(console, exc) from exc
    if result.calibration_choice is not None:
        _plan_table(console, result)
    _split_table(console, result)
    write_manifest(result.manifest, out, columns=MANIFEST_COLUMNS)
    sidecar = out.with_suffix(".json")
    sidecar.write_text(
        json.dumps(
            {
                "fingerprint": result.fingerprint,
                "input": str(ingested.absolute()),
                "seed": seed,
                "fractions": {s.value: f for s, f in result.fractions.items()},
                "planned_fractions": fractions is None,
                "target_recall": target_recall,
                "confidence": confidence,
                "positives_needed": result.positives_needed,
                "external_in_train_dev": external_in_train_dev,
                "splits": result.summary.to_dict(orient="records"),
                "calibration_plan": result.plan_record(),
            },
            indent=2,
        )
    )
    console.print(f"data fingerprint {result.fingerprint}")
    console.print(f"wrote {out} ({len(result.manifest):,} rows) and {sidecar}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("ingest")(ingest_command)
    app.command("split")(split_command)
