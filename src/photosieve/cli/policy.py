"""CLI commands of the policy stage: `calibrate`, `evaluate`, `report` (thin: parse, call the
library, print a table)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.config import CERTIFY, CertifyConfig, Workdir

GROUP_SHOWN = ("n", "n_offensive", "missed_offensive", "recall", "review_rate")
MAX_GROUP_ROWS = 15
GROUP_ORDER = ("missed_offensive", "n_offensive", "review_rate")
MANIFEST_HELP = "labelled manifest (CSV/Parquet) [default: <workdir>/data/split.csv]"
PREVALENCE_HELP = "production prevalence of offensive photos [default: the bundle policy's]"


def _manifest(path: Path | None, workdir: Path | None) -> Path:
    chosen = path or Workdir.of(workdir).split
    if not chosen.is_file():
        raise typer.BadParameter(f"{chosen} does not exist; pass a labelled manifest")
    return chosen


def _read(path: Path) -> Any:
    from photosieve.data.manifest import read_manifest

    return read_manifest(path, columns=("path", "label"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.4f}"
    if isinstance(value, list):
        return escape("[" + ", ".join(_fmt(v) for v in value) + "]")
    return escape(str(value))


def _print_mapping(title: str, data: dict[str, Any]) -> None:
    table = Table(title=title)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in data.items():
        if not isinstance(value, dict):
            table.add_row(key, _fmt(value))
    make_console().print(table)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""

    @app.command()
    def calibrate(
        bundle: Path = typer.Argument(
            ..., metavar="BUNDLE", help="model bundle folder (updated in place)"
        ),
        split_csv: Path = typer.Argument(
            ..., metavar="SPLIT_CSV", help="split manifest with a calibration split"
        ),
        target_recall: float = typer.Option(
            CERTIFY.target_recall, help="certified recall of the approve band"
        ),
        confidence: float = typer.Option(CERTIFY.confidence, help="confidence of each guarantee"),
        target_precision: float = typer.Option(
            CERTIFY.target_precision, help="certified remove-band precision"
        ),
        prevalence: float = typer.Option(
            CERTIFY.prevalence, help="production prevalence the policy is stated at"
        ),
        no_remove_band: bool = typer.Option(
            False, "--no-remove-band", help="send everything not approved to review"
        ),
        workdir: Path | None = typer.Option(None, help="working folder (embedding cache)"),
    ) -> None:
        """Certify the decision thresholds on the calibration split and store them in the bundle."""
        from photosieve.bundle import ModelBundle
        from photosieve.pipeline import calibrate_bundle
        from photosieve.policy.certify import InsufficientPositivesError

        trained = ModelBundle.load(bundle)
        try:
            cfg = CertifyConfig(target_recall, confidence, target_precision, prevalence)
            model = calibrate_bundle(
                trained, split_csv, cfg, remove_band=not no_remove_band, workdir=workdir
            )
        except (InsufficientPositivesError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from exc
        model.save(bundle)
        policy = model.policy
        assert policy is not None  # calibrate_bundle always sets one
        _print_mapping("approve band (certified recall)", policy.evidence["recall"])
        if "precision" in policy.evidence:
            _print_mapping("remove band (certified precision)", policy.evidence["precision"])
        gate = policy.evidence.get("cascade")
        allowed = policy.evidence["recall"].get("max_misses_allowed")
        if gate is not None:
            typer.echo(
                f"cascade: the gate stopped {gate['positives_stopped']} calibration positives "
                f"(misses the certificate counts) and passed {gate['negatives_passed']:.1%} of "
                "its negatives on to the second look"
            )
            if allowed is not None and gate["positives_stopped"] > allowed:
                typer.echo(
                    f"warning: that is more than the {allowed} misses the certificate allows, so "
                    "it approves nothing: retrain with a larger --refine-share", err=True
                )  # fmt: skip
        band = "none" if policy.remove_at is None else f"score ≥ {policy.remove_at:g}"
        typer.echo(f"approve if score < {policy.approve_below:.6g}; remove: {band}; saved {bundle}")
        # The version is a hash of the weights *and* the policy: this is the id the service reports.
        typer.echo(
            f"deployed model version {model.version} (was {trained.version} before calibration)"
        )

    @app.command()
    def evaluate(
        bundle: Path = typer.Argument(..., metavar="BUNDLE", help="calibrated model bundle folder"),
        manifest: Path | None = typer.Argument(None, metavar="MANIFEST", help=MANIFEST_HELP),
        split: str = typer.Option("test", help="split to evaluate; 'all' for every row"),
        prevalence: float | None = typer.Option(None, help=PREVALENCE_HELP),
        json_out: Path | None = typer.Option(None, "--json", help="also write the results here"),
        workdir: Path | None = typer.Option(None, help="working folder (embedding cache)"),
    ) -> None:
        """Bands, recall, remove precision and review rate of the bundle's policy, per group."""
        from photosieve.evaluate.report import evaluate_bundle

        ev = evaluate_bundle(
            bundle, _manifest(manifest, workdir), split=split, prevalence=prevalence,
            workdir=workdir,
        )  # fmt: skip
        _print_mapping(f"evaluation ({split}, π = {ev.prevalence:g})", ev.overall)
        make_console().print(_frame_table("confusion by band", ev.confusion.reset_index()))
        for name, frame in ev.by_group.items():
            shown = frame.sort_values(list(GROUP_ORDER), ascending=False)
            shown = shown[list(GROUP_SHOWN)].head(MAX_GROUP_ROWS).reset_index()
            more = len(frame) - len(shown)
            title = f"by {name}" + (
                f" (top {len(shown)}; all {len(frame)} in --json)" if more else ""
            )
            make_console().print(_frame_table(title, shown))
        if json_out:
            json_out.write_text(json.dumps(ev.to_dict(), indent=2, default=str))

    @app.command()
    def report(
        bundle: Path = typer.Argument(..., metavar="BUNDLE", help="calibrated model bundle folder"),
        manifest: Path | None = typer.Argument(None, metavar="MANIFEST", help=MANIFEST_HELP),
        out: Path = typer.Option(Path("report.html"), help="HTML file to write"),
        split: str = typer.Option("test", help="split to evaluate; 'all' for every row"),
        prevalence: float | None = typer.Option(None, help=PREVALENCE_HELP),
        workdir: Path | None = typer.Option(None, help="working folder (embedding cache)"),
    ) -> None:
        """Write a self-contained HTML report (plots, tables, diagnosis) to decide on deployment."""
        from photosieve.evaluate.report import write_report

        path = write_report(
            bundle, _manifest(manifest, workdir), out, split=split, prevalence=prevalence,
            workdir=workdir,
        )  # fmt: skip
        typer.echo(f"wrote {path}")


def _frame_table(title: str, frame: Any) -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="left" if col == frame.columns[0] else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    return table
