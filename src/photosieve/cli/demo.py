"""The main job (`photosieve demo`): build a certified bundle from labelled photos, then serve it.

It runs the pipeline a team would run by hand — ingest → split → train (embeds on the way) →
calibrate → evaluate → report — printing each command as it goes and skipping a step whose
output is already there (like `make`), then creates a first admin login and an API key and
starts the service on the embedded default (SQLite, local folders).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel

from photosieve.cli.console import console as make_console
from photosieve.cli.database import check_startup, fail_startup, open_database, settings_for
from photosieve.config import (
    CASCADE_BACKBONES,
    CERTIFY,
    DEFAULT_BACKBONE,
    TUNED_BASE_BACKBONE,
    TrainConfig,
    Workdir,
)
from photosieve.paths import shared_data_dir

FIRST_ADMIN = "admin"
DEMO_CLIENT = "demo"  # the tenant whose key the demo prints


def _run(console: Console, args: list[str], output: Path | None) -> None:
    """Run one `photosieve` step unless `output` already exists."""
    shown = "photosieve " + shlex.join(args)
    if output is not None and output.exists():
        console.print(f"[dim]$ {shown}  (skipped: {output} exists)[/dim]")
        return
    console.rule(f"$ {shown}")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "photosieve", *args], check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        console.print(
            f"[bold red]step failed ({done.returncode}) after {seconds:.0f} s:[/] {shown}"
        )
        raise typer.Exit(done.returncode)
    console.print(f"[dim]{args[0]} took {seconds:.1f} s[/dim]")


def _check_bundle_backbone(
    meta: Path, backbone: str, refine: str | None = None, *, tuned: bool = False
) -> None:
    """A bundle left by an earlier run is reused only if it was built on the same backbone(s),
    fine-tuned (`--finetune-epochs`) or not as asked."""
    if not meta.is_file():
        return
    from photosieve.vision.backbone import backbone_config  # torch: only when a bundle exists
    from photosieve.vision.tuned import TUNED_STEM, is_tuned

    data = json.loads(meta.read_text())
    built_on = str(data.get("backbone_id", ""))
    second = (data.get("refiner") or {}).get("backbone_id")
    same_first = is_tuned(built_on) if tuned else built_on == backbone_config(backbone).id
    if not same_first or second != (backbone_config(refine).id if refine else None):
        wanted = f"{backbone} then {refine}" if refine else backbone
        wanted = f"{TUNED_STEM} (--finetune-epochs)" if tuned else wanted
        raise typer.BadParameter(
            f"{meta.parent} was built on {built_on}"
            + (f" then {second}" if second else "")
            + f", not {wanted}: use another --workdir",
            param_hint="--backbone",
        )


def _default_data() -> Path | None:
    shared = shared_data_dir()
    manifest = shared / "bench" / "manifest.csv" if shared else None
    return manifest if manifest and manifest.is_file() else None


def _preflight(workdir: Path) -> None:
    """One line, no traceback, for an unwritable workdir or a missing database beside photos."""
    from photosieve.service.startup import StartupError, ensure_writable

    try:
        ensure_writable(workdir, "workdir")
    except StartupError as exc:
        raise fail_startup(exc) from exc
    check_startup(settings_for(workdir))


def _first_login(workdir: Path) -> tuple[str, str]:
    """Create the first admin (once) and remember its password in a 0600 file."""
    from photosieve.service.security import create_user
    from photosieve.store.accounts import get_user_by_name

    secret_file = Workdir(workdir).first_login
    with open_database(workdir, write=True) as session:  # read, then insert
        if get_user_by_name(session, FIRST_ADMIN) is None:
            password = secrets.token_urlsafe(12)
            create_user(session, FIRST_ADMIN, password, "admin")
            session.commit()
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(password + "\n")
            secret_file.chmod(0o600)
    password = secret_file.read_text().strip() if secret_file.exists() else "(set earlier)"
    return FIRST_ADMIN, password


def _api_key(workdir: Path) -> str:
    from photosieve.store.accounts import create_api_key

    with open_database(workdir, write=True) as session:
        _, key = create_api_key(session, f"demo-{secrets.token_hex(3)}", client=DEMO_CLIENT)
        session.commit()
    return key


def demo(
    data: Path | None = typer.Option(
        None, help="Labelled photos: a manifest or folder [default: ../shared/data/bench]."
    ),
    workdir: Path | None = typer.Option(None, help="Working folder [default: ./work]."),
    target_recall: float = typer.Option(
        CERTIFY.target_recall, help="Recall the approve band must certify."
    ),
    confidence: float = typer.Option(CERTIFY.confidence, help="Confidence of the guarantee."),
    host: str = typer.Option("127.0.0.1", help="Interface the service listens on."),
    port: int = typer.Option(8000, help="TCP port of the service."),
    serve: bool = typer.Option(True, help="Start the service at the end."),
    backbone: str | None = typer.Option(
        None,
        help=f"Registered backbone [default: {DEFAULT_BACKBONE}; {TUNED_BASE_BACKBONE}, the "
        "one fine-tuning starts from, with --finetune-epochs]. efficientnet_lite0_avgmax is "
        "the lighter recipe (1.5x less model CPU, about a fifth more review).",
        show_default=False,
    ),
    cascade: bool = typer.Option(
        False,
        help="Two stages: Lite0 for every photo, Lite0 at 384 px too for the ones it cannot "
        "approve (replaces --backbone; out of fold 19.0% review against the default's 15.7%, "
        "at 2.2x Lite0's model CPU against 1.5x: a recipe to compare, not to pick).",
    ),
    finetune_epochs: int = typer.Option(
        TrainConfig.finetune_epochs,
        help="Fine-tune every layer of Lite0 on the training photos for this many epochs first "
        "(12: the demo split's review 24.1% -> 17.5%; frozen Lite1 without mirror images "
        "19.0%; ~1 h on 2 CPU cores, minutes on a CUDA GPU).",
    ),
    finetune_seeds: int = typer.Option(
        TrainConfig.finetune_seeds,
        help="With --finetune-epochs, average this many tuning runs into one network (a model "
        "soup: 3 cut the review rate by ~2 points more out of fold; 3× the tuning time).",
    ),
) -> None:
    """Main job: build a certified model from labelled photos, then serve it (SQLite, ./work)."""
    console = make_console()
    if cascade and finetune_epochs:  # the demo's cascade decodes for 384 px, the tuned Lite0 224
        raise typer.BadParameter(
            "--cascade's first stage decodes for 384 px, --finetune-epochs tunes Lite0 at 224: "
            "build a tuned cascade with photosieve train --finetune-epochs N --refine-backbone "
            "efficientnet_lite2_224_avgmax"
        )
    try:  # settings train would refuse, refused before any work; "" = the recipe's default
        backbone = TrainConfig(
            backbone=CASCADE_BACKBONES[0] if cascade else backbone or "",
            refine_backbone=CASCADE_BACKBONES[1] if cascade else None,
            finetune_epochs=finetune_epochs,
            finetune_seeds=finetune_seeds,
        ).backbone
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    layout = Workdir.of(workdir)
    work = layout.root
    _preflight(work)
    source = data or _default_data()
    if source is None:
        raise typer.BadParameter(
            "no labelled photos: pass --data <manifest.csv|folder> (../shared/data/bench "
            "is not beside the checkout)",
            param_hint="--data",
        )
    ingested, split, bundle = layout.ingested, layout.split, layout.bundle
    common = ["--workdir", str(work)]
    _run(console, ["ingest", str(source), "--out", str(ingested)], ingested)
    targets = ["--target-recall", str(target_recall), "--confidence", str(confidence)]
    _run(console, ["split", str(ingested), "--out", str(split), *targets], split)
    extra: list[str] = []  # the train step's cascade or fine-tuning arguments
    second: str | None = None
    if cascade:
        backbone, second = CASCADE_BACKBONES
        extra = ["--refine-backbone", second]
    _check_bundle_backbone(bundle / "bundle.json", backbone, second, tuned=finetune_epochs > 0)
    if finetune_epochs:
        extra = ["--finetune-epochs", str(finetune_epochs), "--finetune-seeds", str(finetune_seeds)]
    train = ["train", str(split), "--out", str(bundle), "--backbone", backbone, *extra, *common]
    _run(console, train, bundle / "bundle.json")
    calibrated = bundle / ".calibrated"
    _run(console, ["calibrate", str(bundle), str(split), *targets, *common], calibrated)
    calibrated.touch()
    _run(console, ["evaluate", str(bundle), str(split), *common], None)
    report = layout.report
    _run(console, ["report", str(bundle), str(split), "--out", str(report), *common], None)
    if not serve:
        return
    user, password = _first_login(work)
    key = _api_key(work)
    args = ["serve", "--host", host, "--port", str(port), "--bundle", str(bundle)]
    env = {**os.environ, "PHOTOSIEVE_WORKDIR": str(work)}
    server = subprocess.Popen([sys.executable, "-m", "photosieve", *args], env=env)
    try:
        if not _wait_for_port(server, host, port):
            raise typer.Exit(server.wait() or 1)
        console.print(
            Panel.fit(
                f"Reviewer UI  http://{host}:{port}/   (sign in below)\n"
                f"Upload API   POST http://{host}:{port}/v1/uploads  (API key below)\n"
                f"API docs     http://{host}:{port}/docs\n"
                f"Report       {report}",
                title="photosieve is ready",
            )
        )
        # Secrets on plain lines of their own, so a terminal never wraps them mid-copy.
        console.print(f"first login:  {user} / {password}", soft_wrap=True)
        console.print(f"API key:      Authorization: Bearer {key}", soft_wrap=True)
        raise typer.Exit(server.wait())
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait()


def _wait_for_port(server: subprocess.Popen[bytes], host: str, port: int) -> bool:
    """Wait until the service accepts connections (True) or its process has exited (False)."""
    while server.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.2)
    return False


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("demo")(demo)
