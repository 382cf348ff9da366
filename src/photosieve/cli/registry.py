"""CLI commands of the model registry (thin): `retrain` registers a candidate; `model list`,
`model shadow VERSION`, `model promote VERSION [--override --reason]`, `model rollback [VERSION]`.

Every running worker picks up a promote or rollback by itself within `model_check_seconds`
(`service.models`); nothing restarts. Moves are written to the model audit log as
`cli:<login>`.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import (
    WORKDIR_HELP,
    open_database,
    settings_for,
    workdir_callback,
)
from photosieve.config import CERTIFY, CertifyConfig, TrainConfig, Workdir
from photosieve.records import Split

_T = TrainConfig()
model_app = typer.Typer(
    help="The model registry: list, shadow, promote (gated), roll back.",
    no_args_is_help=True,
    callback=workdir_callback,
)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _fractions(text: str | None) -> dict[Split, float] | None:
    if not text:
        return None
    try:
        pairs = (part.split("=", 1) for part in text.split(",") if part.strip())
        return {Split(name.strip()): float(value) for name, value in pairs}
    except ValueError as exc:
        raise typer.BadParameter(
            f"--fractions must look like 'train=0.5,validation=0.2,calibration=0.3' with split "
            f"names {', '.join(s.value for s in Split)}: {exc}"
        ) from None


def retrain(
    base_manifest: Path | None = typer.Option(
        None, help="Earlier training data [default: the live model's split manifest]."
    ),
    target_recall: float = typer.Option(CERTIFY.target_recall, help="Recall to certify."),
    confidence: float = typer.Option(CERTIFY.confidence, help="Confidence of the certificate."),
    fractions: str | None = typer.Option(
        None,
        help="Split fractions, e.g. 'train=0.5,validation=0.2,calibration=0.3' "
        "[default: the workload planner]",
    ),
    epochs: int = typer.Option(_T.epochs),
    ensemble: int = typer.Option(_T.ensemble),
    seed: int = typer.Option(0, help="Seed of the split and the training."),
    backbone: str | None = typer.Option(
        None, help="Registered backbone [default: the live model's (a cascade stays a cascade)]."
    ),
    refine_backbone: str | None = typer.Option(
        None, help="A cascade's second backbone (with --backbone; see `photosieve train`)."
    ),
    jobs: int = typer.Option(
        0,
        help="Processes fitting the head ensemble's members side by side [default: one per core].",
        show_default=False,
    ),
    workdir: Path | None = typer.Option(None, help=WORKDIR_HELP),
) -> None:
    """Reviewers' labels + earlier data → split → train → calibrate → a registered candidate."""
    from photosieve.feedback.retrain import RetrainConfig, live_recipe, retrain
    from photosieve.policy.certify import InsufficientPositivesError
    from photosieve.vision.runtime import available_cores

    settings = settings_for(workdir)
    with open_database(workdir) as session:
        recipe = live_recipe(session)
    if backbone is not None:
        recipe = {"backbone": backbone, "refine_backbone": refine_backbone}
    elif refine_backbone is not None:
        raise typer.BadParameter("--refine-backbone needs --backbone", param_hint="--backbone")
    cfg = RetrainConfig(
        train=TrainConfig(
            epochs=epochs, ensemble=ensemble, seed=seed, target_recall=target_recall, **recipe
        ),
        certify=CertifyConfig(target_recall=target_recall, confidence=confidence),
        fractions=_fractions(fractions),
        seed=seed,
    )
    with open_database(workdir) as session:
        try:
            out = retrain(
                session,
                settings.photo_store(),
                Workdir(settings.workdir),
                cfg,
                actor=_actor(),
                base_manifest=base_manifest,
                progress=True,
                jobs=jobs if jobs > 0 else available_cores(),
            )
        except (InsufficientPositivesError, ValueError) as exc:
            typer.echo(f"photosieve: retrain: {exc}", err=True)
            raise typer.Exit(1) from exc
    console = make_console()
    table = Table(title=f"candidate {out.version} (parent {out.parent_version or '—'})")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    recall = out.evidence["calibration"]["recall"]
    for name, value in (
        ("photos (merged, split afresh)", f"{out.photos:,}"),
        ("reviewer labels exported", f"{out.feedback.rows:,} ({out.feedback.offensive} offensive)"),
        ("approve threshold", f"{recall['threshold']:.6g}"),
        ("certified recall lower bound", f"{recall['recall_lower_bound']:.4f}"),
        ("split manifest", str(out.manifest_path)),
        ("bundle", str(out.bundle_path)),
    ):
        table.add_row(name, value)
    console.print(table)
    console.print(
        f"Next: photosieve model shadow {out.version}; photosieve model promote {out.version}"
    )


@model_app.command("list")
def list_models() -> None:
    """Every registered version, newest first, and the recent audit log."""
    from photosieve.store import registry

    with open_database() as session:
        rows = registry.list_versions(session)
        events = registry.events(session, limit=10)
    table = Table(title="model registry")
    for column in ("version", "status", "parent", "created", "promoted by", "override"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.version,
            row.status,
            row.parent_version or "—",
            row.created_at.isoformat(timespec="seconds"),
            row.promoted_by or "—",
            "yes" if row.override else "",
        )
    console = make_console()
    console.print(table)
    log = Table(title="model audit log (newest first)")
    for column in ("at", "event", "version", "previous", "by", "reason"):
        log.add_column(column)
    for e in events:
        log.add_row(
            e.at.isoformat(timespec="seconds"),
            e.kind + (" (override)" if e.override else ""),
            e.version,
            e.previous_version or "—",
            e.actor,
            e.reason or "",
        )
    console.print(log)


@model_app.command("shadow")
def shadow(version: str = typer.Argument(..., help="Registered version to run in shadow.")) -> None:
    """Score every upload with VERSION too (recorded, never acted on)."""
    from photosieve.feedback.promote import start_shadow
    from photosieve.store.registry import RegistryError

    with open_database() as session:
        try:
            start_shadow(session, version, actor=_actor())
        except RegistryError as exc:
            typer.echo(f"photosieve: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"{version} scores uploads in shadow (workers pick it up within seconds)")


@model_app.command("promote")
def promote(
    version: str = typer.Argument(..., help="Candidate version to make live."),
    override: bool = typer.Option(False, help="Promote even if the gate refuses (audited)."),
    reason: str | None = typer.Option(None, help="Why (required with --override)."),
    target_recall: float = typer.Option(CERTIFY.target_recall, help="Recall to certify."),
    confidence: float = typer.Option(CERTIFY.confidence, help="Confidence of the certificate."),
    tolerance: float = typer.Option(0.0, help="Allowed review-rate increase over live."),
) -> None:
    """Gate VERSION against the live model; make it live if it passes (or --override)."""
    from photosieve.feedback.promote import promote as run_promote
    from photosieve.store.registry import RegistryError

    settings = settings_for()
    certify = CertifyConfig(target_recall=target_recall, confidence=confidence)
    with open_database() as session:
        try:
            done = run_promote(
                session,
                version,
                actor=_actor(),
                override=override,
                reason=reason,
                certify=certify,
                tolerance=tolerance,
                legacy_audit_rate=settings.audit_rate,
                workdir=settings.workdir,
            )
        except RegistryError as exc:
            typer.echo(f"photosieve: {exc}", err=True)
            raise typer.Exit(1) from exc
    console = make_console()
    table = Table(title=f"gate: {version} vs live (target recall {target_recall:g})")
    for column in (
        "source",
        "photos",
        "offensive",
        "recall ≥",
        "certified",
        "review rate",
        "live review rate",
    ):
        table.add_column(column, justify="right")
    for c in done.result.checks:
        table.add_row(
            c.source,
            str(c.photos),
            f"{c.positives}/{c.positives_required}",
            f"{c.recall_lower_bound:.4f}",
            "yes" if c.certified else "no",
            f"{c.candidate_review_rate:.4f}",
            f"{c.live_review_rate:.4f}",
        )
    console.print(table)
    for message in done.result.messages:
        console.print(f"[yellow]{message}[/]")
    if not done.promoted:
        typer.echo(
            f"refused: {', '.join(done.result.reasons)} ({version} stays "
            "as it is; --override --reason to promote anyway)",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(f"{version} is live" + (" (gate overridden, audited)" if done.override else ""))


@model_app.command("rollback")
def rollback(
    version: str | None = typer.Argument(
        None, help="Earlier live version [default: the one live before the current one]."
    ),
) -> None:
    """Make an earlier live version live again (no gate: it was live)."""
    from photosieve.feedback.promote import rollback as run_rollback
    from photosieve.store.registry import RegistryError

    with open_database() as session:
        try:
            row = run_rollback(session, version, actor=_actor())
        except RegistryError as exc:
            typer.echo(f"photosieve: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(f"{row.version} is live again")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("retrain")(retrain)
    app.add_typer(model_app, name="model")
