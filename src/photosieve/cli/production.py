"""CLI command `photosieve certify-production`: the live model's recall certified on production
evidence — the review band's census and the audits of auto-approved uploads (thin wrapper).

Prints the exact bound for this look and the anytime-valid one, at the bundle's approve threshold,
and the highest threshold the production evidence alone certifies at the target.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import WORKDIR_HELP, open_database, settings_for
from photosieve.config import CERTIFY, Workdir


def certify_production(
    bundle: Path | None = typer.Option(
        None, help="The live model bundle [default: <workdir>/bundle]."
    ),
    target_recall: float = typer.Option(CERTIFY.target_recall, help="Recall to certify."),
    confidence: float = typer.Option(CERTIFY.confidence, help="Confidence of each bound."),
    workdir: Path | None = typer.Option(None, help=WORKDIR_HELP),
) -> None:
    """The live model's recall on production, certified from census + audits."""
    from photosieve.bundle import ModelBundle
    from photosieve.policy.production import (
        anytime_recall_bound,
        certify_threshold,
        recall_bound,
    )
    from photosieve.store.evidence import production_evidence

    path = bundle or Workdir.of(workdir).bundle
    try:
        model = ModelBundle.load(path)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--bundle") from exc
    if model.policy is None:
        raise typer.BadParameter(f"{path} has no certified policy; run `photosieve calibrate`")
    audit_rate = settings_for(workdir).audit_rate
    with open_database(workdir) as session:
        ev = production_evidence(session, model.version, legacy_audit_rate=audit_rate)
    console = make_console()
    labelled_pos = int((ev.labelled & ev.offensive).sum())
    if labelled_pos == 0:
        console.print(f"no labelled offensive uploads of model {model.version} yet: nothing to "
                      "certify (reviews of the review band and audits provide them)")  # fmt: skip
        raise typer.Exit(1)
    t = model.policy.approve_below
    fixed = recall_bound(ev, t, confidence=confidence)
    anytime = anytime_recall_bound(ev, t, confidence=confidence)
    best = certify_threshold(ev, target_recall=target_recall, confidence=confidence)
    table = Table(title=f"production recall of model {model.version} ({confidence:.0%} confidence)")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("uploads with evidence", f"{ev.scores.size:,}"),
        ("labelled (census + audits)", f"{int(ev.labelled.sum()):,}"),
        ("labelled offensive", f"{labelled_pos:,}"),
        ("live approve threshold", f"{t:.6g}"),
        ("caught / audited misses", f"{fixed.caught:,} / {fixed.audited_misses:,}"),
        ("misses, upper bound", f"{fixed.misses_upper_bound:,}"),
        ("recall lower bound (this look)", f"{fixed.recall_lower_bound:.4f}"),
        ("recall lower bound (valid at every look)", f"{anytime.recall_lower_bound:.4f}"),
        (f"highest threshold certifying {target_recall:g}",
         "none" if best is None else f"{best.threshold:.6g} (bound {best.recall_lower_bound:.4f})"),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("certify-production")(certify_production)
