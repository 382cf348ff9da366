"""CLI command `photosieve capacity`: reviewers needed at 1M, 10M and 100M users (thin wrapper).

Rates come from the service's database when it has history (measured), else from the named
assumptions (each printed with its origin); the review share and the certificate curve come from
the bundle scored on the held-out primary rows of its split manifest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import open_database, settings_for
from photosieve.config import Workdir
from photosieve.feedback.capacity import CURVE_POSITIVES, USER_COUNTS, Workload


def _measured(workdir: Path | None) -> dict[str, float]:
    from photosieve.feedback.capacity import measured_rates
    from photosieve.service.startup import sqlite_path
    from photosieve.store.throughput import review_throughput

    path = sqlite_path(settings_for(workdir).resolved_database_url)
    if path is not None and not path.is_file():
        return {}  # no service has run here yet: nothing measured
    with open_database(workdir) as session:
        return measured_rates(review_throughput(session))


def _held_out_scores(bundle: Path, manifest: Path, workdir: Path | None) -> tuple[Any, Any, Any]:
    from photosieve.bundle import ModelBundle
    from photosieve.data.manifest import read_manifest
    from photosieve.records import PRIMARY_SOURCE, binary_labels
    from photosieve.scoring import score_rows

    model = ModelBundle.load(bundle)
    frame = read_manifest(manifest, columns=("path", "label"))
    rows = frame[(frame["source"] == PRIMARY_SOURCE)
                 & frame["split"].isin(["calibration", "test"])].reset_index(drop=True)  # fmt: skip
    scores = score_rows(model, rows, workdir=workdir, progress=False)
    y = binary_labels(rows["label"].to_numpy())
    return model, scores[y], scores[~y]


def capacity(
    uploads_per_user_day: float = typer.Option(
        Workload.uploads_per_user_per_day, help="Avatar uploads per user per day (assumed)."
    ),
    hours_per_day: float = typer.Option(
        Workload.hours_per_day, help="Productive review hours per reviewer per day (assumed)."
    ),
    review_share: float | None = typer.Option(
        None,
        min=0.0,
        max=1.0,
        help="Share of uploads sent to people, when no bundle and split are at hand (assumed).",
    ),
    bundle: Path | None = typer.Option(None, help="Model bundle [default: <workdir>/bundle]."),
    manifest: Path | None = typer.Option(
        None, help="Split manifest [default: <workdir>/data/split.csv]."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the forecast here."),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
) -> None:
    """How many reviewers the forum needs at 1M, 10M and 100M users, and what more labelled
    production positives would save."""
    from photosieve.feedback.capacity import certified_review_curve, reviewers_needed

    layout = Workdir.of(workdir)
    origin: dict[str, str] = {}
    values: dict[str, float] = {"uploads_per_user_per_day": uploads_per_user_day,
                                "hours_per_day": hours_per_day}  # fmt: skip
    if review_share is not None:
        values["review_share"] = review_share
    origin.update({k: "assumed (option)" for k in values})
    curve: list[dict[str, Any]] = []
    bundle_path, manifest_path = bundle or layout.bundle, manifest or layout.split
    if (bundle_path / "bundle.json").is_file() and manifest_path.is_file():
        model, pos, neg = _held_out_scores(bundle_path, manifest_path, workdir)
        if model.policy is not None:
            t, pi = model.policy.approve_below, model.policy.prevalence
            values["review_share"] = pi * float((pos >= t).mean()) + (1 - pi) * float(
                (neg >= t).mean()
            )
            values["prevalence"] = pi
            origin["review_share"] = f"bundle {model.version} on held-out photos at π = {pi:g}"
        pi = values.get("prevalence", Workload.prevalence)
        curve = certified_review_curve(pos, neg, CURVE_POSITIVES, prevalence=pi)
    for key, value in _measured(workdir).items():
        values[key], origin[key] = value, "measured (database)"
    workload = Workload(**values)
    for field in dataclasses.fields(Workload):
        origin.setdefault(field.name, "assumed (default)")
    rows = reviewers_needed(workload, USER_COUNTS)
    console = make_console()
    table = Table(title="Assumptions")
    for col in ("quantity", "value", "from"):
        table.add_column(col)
    for field in dataclasses.fields(Workload):
        table.add_row(field.name, f"{getattr(workload, field.name):g}", origin[field.name])
    console.print(table)
    forecast = Table(title="Reviewers needed")
    for col in ("users", "uploads/day", "queue items/day", "reviewers"):
        forecast.add_column(col, justify="right")
    for r in rows:
        forecast.add_row(f"{r['users']:,.0f}", f"{r['uploads_per_day']:,.0f}",
                         f"{r['items_per_day']:,.0f}", f"{r['reviewers']:,.1f}")  # fmt: skip
    console.print(forecast)
    if curve:
        cert = Table(title="Certified review rate as labelled production positives accumulate")
        for col in ("positives", "misses allowed", "review rate"):
            cert.add_column(col, justify="right")
        for c in curve:
            rate = "—" if c["review_rate"] is None else f"{c['review_rate']:.2%}"
            cert.add_row(f"{c['positives']:,}", str(c["misses_allowed"]), rate)
        console.print(cert)
    if json_out is not None:
        payload = {"assumptions": dataclasses.asdict(workload), "origin": origin,
                   "forecast": rows, "certificate_curve": curve}  # fmt: skip
        json_out.write_text(json.dumps(payload, indent=2))


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("capacity")(capacity)
