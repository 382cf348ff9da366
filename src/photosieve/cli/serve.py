"""CLI commands of the serve stage: `serve`, `apikey create|list|revoke`, `client
list|deactivate|activate` (thin wrappers); `user …` lives in `cli/users.py`, `client webhook …`
in `cli/webhooks.py`.

Each command reads `Settings` from the environment (`PHOTOSIEVE_*`), so `apikey create` writes
to the same database `serve` uses. Every API key belongs to a client (a forum or site, the
tenant): its keys see only that client's uploads. `serve` refuses a placeholder or weak
`PHOTOSIEVE_SECRET_KEY`; without one it creates (once) and reuses `<workdir>/service/secret_key`.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from photosieve.cli import users
from photosieve.cli.console import console as make_console
from photosieve.cli.database import fail_startup, open_database, workdir_callback
from photosieve.cli.webhooks import webhook_app

apikey_app = typer.Typer(
    help="Manage API keys of upload clients.", no_args_is_help=True, callback=workdir_callback
)
client_app = typer.Typer(
    help="Manage clients (tenants: the forums and sites sending uploads).",
    no_args_is_help=True,
    callback=workdir_callback,
)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    bundle: Path | None = typer.Option(None, help="Model bundle folder (PHOTOSIEVE_BUNDLE_PATH)."),
    workdir: Path | None = typer.Option(
        None, help="Working folder: database, photos, secret key (PHOTOSIEVE_WORKDIR) [./work]."
    ),
    workers: int = typer.Option(
        1,
        min=1,
        help="Worker processes sharing the database (PostgreSQL, or SQLite on one host); each "
        "scores with its share of half the cores as onnxruntime threads unless "
        "PHOTOSIEVE_ONNX_THREADS is set.",
    ),
) -> None:
    """Run the moderation service (API, review queue and reviewer UI)."""
    import uvicorn
    from pydantic import ValidationError

    from photosieve.service.app import APP_FACTORY, create_app, prepare
    from photosieve.service.config import Settings, default_onnx_threads
    from photosieve.service.startup import StartupError

    try:
        overrides: dict[str, Path] = {}
        if bundle is not None:
            overrides["bundle_path"] = bundle.resolve()
        if workdir is not None:
            overrides["workdir"] = workdir.resolve()
        if workers == 1:
            settings = Settings(**overrides)  # type: ignore[arg-type]
            app = create_app(settings)
        else:
            # Each worker process builds its own app from the environment (`create_app()`):
            # the options travel there.
            for name, value in overrides.items():
                os.environ[f"PHOTOSIEVE_{name.upper()}"] = str(value)
            threads = str(default_onnx_threads(workers))
            os.environ.setdefault("PHOTOSIEVE_ONNX_THREADS", threads)
            settings = Settings()
            prepare(settings)  # checks, secret key and migrations once, before the workers
            app = None
    except StartupError as exc:  # unwritable folder, missing database beside photos
        raise fail_startup(exc) from exc
    except ValidationError as exc:
        messages = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        raise typer.BadParameter(messages) from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    table = Table(title="photosieve service")
    table.add_column("setting")
    table.add_column("value")
    table.add_row("URL", f"http://{host}:{port}/")
    table.add_row("database", settings.resolved_database_url)
    table.add_row("images", settings.photo_store().location)
    if app is not None:
        table.add_row("model", app.state.model_version)
    else:
        table.add_row("model", str(settings.resolved_bundle_path))
        table.add_row("workers", f"{workers} × {settings.onnx_threads} onnxruntime threads")
    key_source = "PHOTOSIEVE_SECRET_KEY" if settings.secret_key else str(settings.secret_key_file)
    table.add_row("session key", key_source)
    make_console().print(table)
    if app is not None:
        uvicorn.run(app, host=host, port=port, log_level="info")
    else:
        uvicorn.run(
            APP_FACTORY, factory=True, workers=workers, host=host, port=port, log_level="info"
        )


@apikey_app.command("create")
def apikey_create(
    name: str = typer.Argument(..., help="Key name, e.g. 'forum-2026'."),
    client: str | None = typer.Option(
        None, help="Client (tenant) the key belongs to; created if missing [default: NAME]."
    ),
) -> None:
    """Create an API key for an upload client; the key is printed once, never stored."""
    from photosieve.store.accounts import create_api_key

    with open_database(write=True) as session:
        try:
            row, key = create_api_key(session, name, client=client)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        session.commit()
        owner = client.strip() if client is not None else row.name
    typer.echo(
        f"API key {row.name!r} of client {owner!r} "
        "(shown once; send as `Authorization: Bearer <key>`):"
    )
    typer.echo(key)


def _when(moment: object) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never the keys themselves: their first characters)."""
    from photosieve.store.accounts import list_api_keys

    table = Table(title="API keys")
    for column in ("name", "client", "prefix", "created (UTC)", "revoked (UTC)"):
        table.add_column(column)
    with open_database() as session:
        for key, client in list_api_keys(session):
            owner = client.name if client is not None else "-"
            table.add_row(
                key.name, owner, key.prefix + "…", _when(key.created_at), _when(key.revoked_at)
            )
    make_console().print(table)


@apikey_app.command("revoke")
def apikey_revoke(name: str = typer.Argument(..., help="Key name (see `apikey list`).")) -> None:
    """Revoke an API key: it is refused from now on (its uploads stay)."""
    from photosieve.store.accounts import revoke_api_key

    with open_database(write=True) as session:
        try:
            row = revoke_api_key(session, name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        session.commit()
    typer.echo(f"revoked API key {row.name!r}")


@client_app.command("list")
def client_list() -> None:
    """List clients with their live keys and uploads."""
    from photosieve.store.accounts import client_summaries

    table = Table(title="clients")
    for column in ("name", "active", "live keys", "uploads", "created (UTC)"):
        table.add_column(column)
    with open_database() as session:
        for client, keys, count in client_summaries(session):
            active = "yes" if client.active else "no"
            table.add_row(client.name, active, str(keys), str(count), _when(client.created_at))
    make_console().print(table)


def _set_active(name: str, active: bool) -> None:
    from photosieve.store.accounts import set_client_active

    with open_database(write=True) as session:
        try:
            client = set_client_active(session, name, active)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        session.commit()
    typer.echo(f"client {client.name!r} is {'active' if active else 'deactivated'}")


@client_app.command("deactivate")
def client_deactivate(name: str = typer.Argument(..., help="Client name.")) -> None:
    """Refuse every key of a client (uploads stay; `activate` undoes it)."""
    _set_active(name, False)


@client_app.command("activate")
def client_activate(name: str = typer.Argument(..., help="Client name.")) -> None:
    """Accept a deactivated client's keys again."""
    _set_active(name, True)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("serve")(serve)
    users.register(app)
    app.add_typer(apikey_app, name="apikey")
    client_app.add_typer(webhook_app, name="webhook")
    app.add_typer(client_app, name="client")
