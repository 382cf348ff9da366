"""CLI commands of the learn stage (thin: parse, call the library, print a table).

`photosieve train <split.csv>` fits the head and writes a model bundle;
`photosieve diagnose <bundle>` prints the bias / variance / data-mismatch table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.config import DEFAULT_BACKBONE, TUNED_BASE_BACKBONE, TrainConfig, Workdir

_D = TrainConfig()  # the defaults of every training option


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise typer.BadParameter(f"--hidden must be comma-separated widths, got {text!r}") from None
    return widths


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def train(
    manifest: Path = typer.Argument(
        ..., metavar="MANIFEST", help="split manifest (CSV/Parquet) from `photosieve split`"
    ),
    out: Path | None = typer.Option(
        None, help="where to write the model bundle [default: <workdir>/bundle]"
    ),
    workdir: Path | None = typer.Option(None, help="working folder (embedding cache)"),
    hidden: str = typer.Option(
        ",".join(map(str, _D.hidden)), help="hidden layer widths, comma-separated ('' = none)"
    ),
    activation: str = typer.Option(_D.activation, help="relu | gelu | tanh | sigmoid"),
    dropout: float = typer.Option(_D.dropout),
    epochs: int = typer.Option(_D.epochs),
    lr: float = typer.Option(_D.lr),
    weight_decay: float = typer.Option(_D.weight_decay),
    imbalance: str = typer.Option(
        _D.imbalance, help="balanced (sampling) | weighted (loss) | none"
    ),
    monitor: str = typer.Option(
        _D.monitor, help="early stopping on validation: high_recall | review_rate | ap"
    ),
    loss: str = typer.Option(_D.loss, help="bce | focal"),
    ensemble: int = typer.Option(_D.ensemble, help="heads with consecutive seeds, logits averaged"),
    seed: int = typer.Option(_D.seed),
    backbone: str | None = typer.Option(
        None,
        help=f"registered backbone whose embeddings the head uses [default: {DEFAULT_BACKBONE}; "
        f"{TUNED_BASE_BACKBONE} with --finetune-epochs]",
        show_default=False,
    ),
    train_mirror: bool = typer.Option(
        _D.train_mirror,
        "--train-mirror/--no-train-mirror",
        help="also train the head on the training photos' mirror images (no serving cost)",
    ),
    refine_backbone: str | None = typer.Option(
        _D.refine_backbone,
        help="a two-stage cascade: this backbone's embedding, next to the first, is scored by a "
        "second head for the photos the first cannot approve (efficientnet_lite0_384_avgmax, "
        "with --backbone efficientnet_lite0_avgmax_d384)",
    ),
    refine_share: float = typer.Option(
        _D.refine_share,
        help="share of validation negatives the cascade's first stage passes on (its CPU budget)",
    ),
    refine_stop: float = typer.Option(
        _D.refine_stop, help="most validation positives the cascade's first stage may stop"
    ),
    finetune_epochs: int = typer.Option(
        _D.finetune_epochs,
        help="first fine-tune every layer of the backbone (efficientnet_lite0_avgmax) for this "
        "many epochs on the train photos; the bundle carries the tuned weights. Uses a CUDA GPU "
        "when present; on 2 CPU cores about 20 photos/s a pass (0 = the frozen backbone)",
    ),
    finetune_seeds: int = typer.Option(
        _D.finetune_seeds,
        help="with --finetune-epochs, tune this many runs (seeds seed, seed + 1, …) from one start "
        "and serve their weights' mean (a model soup: an ensemble's steadiness at one network's "
        "cost, this many times the tuning time)",
    ),
    finetune_head: str = typer.Option(
        _D.finetune_head,
        help="with --finetune-epochs, the head: 'refit' (the head above, fitted afresh on the "
        "tuned embeddings), 'tuned' (the classifier tuned with the backbone) or 'both' (the mean "
        "of the two heads' logits)",
    ),
    threads: int = typer.Option(
        1, help="torch threads (the head is small: 1 is fastest; fine-tuning uses every core)"
    ),
    jobs: int = typer.Option(
        0,
        help="processes fitting the ensemble's heads side by side, each with --threads torch "
        "threads (the same heads, sooner) [default: one per core]",
        show_default=False,
    ),
) -> None:
    """Train the head on a split manifest's train rows; write a model bundle."""
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from photosieve.pipeline import train_bundle
    from photosieve.vision.runtime import available_cores

    torch.set_num_threads(max(1, threads))
    out = out or Workdir.of(workdir).bundle
    console = make_console()
    try:
        cfg = TrainConfig(
            hidden=_hidden(hidden),
            activation=activation,
            dropout=dropout,
            epochs=epochs,
            lr=lr,
            weight_decay=weight_decay,
            imbalance=imbalance,
            loss=loss,
            monitor=monitor,
            ensemble=ensemble,
            seed=seed,
            backbone=backbone or "",  # "": the recipe's default (TrainConfig)
            train_mirror=train_mirror,
            refine_backbone=refine_backbone,
            refine_share=refine_share,
            refine_stop=refine_stop,
            finetune_epochs=finetune_epochs,
            finetune_head=finetune_head,
            finetune_seeds=finetune_seeds,
        )
    except ValueError as exc:  # a setting the config refuses: a bad parameter, not a crash
        raise typer.BadParameter(str(exc)) from None
    if cfg.finetune_epochs:
        torch.set_num_threads(max(threads, available_cores()))
    heads = max(cfg.ensemble, 1) * (2 if cfg.refine_backbone else 1)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TextColumn("{task.fields[status]}"), console=console) as bar:
        task = bar.add_task("training", total=cfg.epochs * heads, status="")
        state = {"member": 0, "last": 0}

        def on_epoch(epoch: int, record: dict[str, Any]) -> None:
            if epoch <= state["last"]:  # a new ensemble member started
                state["member"] += 1
            state["last"] = epoch
            bar.update(
                task,
                completed=state["member"] * cfg.epochs + epoch,
                description=f"head {state['member'] + 1}/{heads} epoch {epoch}",
                status=f"loss {record['loss']:.4f}  val review@99% "
                f"{record.get('val_review_rate', float('nan')):.3f}",
            )

        jobs = jobs if jobs > 0 else available_cores()
        outcome = train_bundle(manifest, cfg, workdir=workdir, on_epoch=on_epoch, jobs=jobs)
        bar.update(task, completed=cfg.epochs * heads)
    for message in outcome.warnings:
        console.print(f"[bold yellow]warning:[/bold yellow] {message}")
    bundle = outcome.bundle
    bundle.save(out)
    metrics = bundle.metrics
    table = Table(
        title=f"photosieve train → {out} (bundle version {bundle.version}; calibrating gives the "
        "deployed version)"
    )
    for col in ("split", "photos", "offensive", "AP", "review @99% recall", "@1% prev.", "recall"):
        table.add_column(col, justify="right")
    for split, row in metrics["splits"].items():
        table.add_row(
            split,
            str(int(row["n"])),
            str(int(row["positives"])),
            _fmt(row["average_precision"]),
            _fmt(row.get("review_rate_at_recall", float("nan"))),
            _fmt(row.get("review_rate_at_recall_prev1pct", float("nan"))),
            _fmt(row["recall_at_operating"]),
        )
    console.print(table)
    health = metrics["gradient_health"]
    ratio = health.get("first_to_last")
    console.print(
        f"operating threshold (99% recall on validation): {metrics['operating_threshold']:.4f}; "
        f"best epoch(s): {metrics['best_epoch']}; gradient first/last layer: "
        + (f"{ratio:.3g}" if ratio is not None else "—")
    )
    if bundle.refiner is not None:
        rule = bundle.refiner.gate_rule
        console.print(
            f"cascade: the first stage approves below {bundle.refiner.gate:.4g} (stops "
            f"{rule['validation_positives_stopped']} of {rule['validation_positives']} validation "
            f"positives); {rule['validation_negatives_passed']:.1%} of validation negatives go "
            "on to the second look; the table above is the composite score's"
        )


def diagnose(
    bundle_path: Path | None = typer.Argument(
        None, metavar="BUNDLE_PATH", help="model bundle folder [default: <workdir>/bundle]"
    ),
    split_manifest: Path | None = typer.Option(
        None, help="split manifest (default: the one the bundle was trained on)"
    ),
    workdir: Path | None = typer.Option(None, help="working folder (embedding cache)"),
    human_error: float = typer.Option(0.0, help="human-level error (reviewers ≈ 0)"),
) -> None:
    """Bias / variance / data-mismatch table of a trained bundle."""

    from photosieve.bundle import ModelBundle
    from photosieve.cli.diagnosis_view import print_diagnosis
    from photosieve.evaluate.diagnose import diagnose_bundle

    bundle = ModelBundle.load(bundle_path or Workdir.of(workdir).bundle)
    manifest = split_manifest or bundle.train_config.get("manifest")
    if not manifest:
        raise typer.BadParameter("the bundle names no manifest; pass --split-manifest")
    result = diagnose_bundle(bundle, Path(manifest), workdir=workdir, human_error=human_error)
    print_diagnosis(result, make_console())


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("train")(train)
    app.command("diagnose")(diagnose)
