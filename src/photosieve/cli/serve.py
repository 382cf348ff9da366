"""CLI commands of the serve stage: `serve`, `user add`, `apikey create` (thin wrappers).

Each command reads `Settings` from the environment (`PHOTOSIEVE_*`), so `user add` and
`apikey create` write to the same database `serve` uses.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

user_app = typer.Typer(help="Manage reviewer and admin accounts.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys of upload clients.", no_args_is_help=True)


def fail_startup(exc: Exception) -> typer.Exit:
    """Print a start-up refusal as one line on stderr (no traceback); exit status 1."""
    typer.echo(f"photosieve: {exc}", err=True)
    return typer.Exit(1)


def _sessions() -> object:
    from photosieve.service.config import Settings
    from photosieve.service.startup import StartupError, preflight
    from photosieve.store.db import make_engine, make_sessionmaker, migrate

    settings = Settings()
    try:
        preflight(settings)  # never create an empty database beside stored photos
    except StartupError as exc:
        raise fail_startup(exc) from exc
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return make_sessionmaker(engine)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    bundle: Path | None = typer.Option(None, help="Model bundle folder (PHOTOSIEVE_BUNDLE_PATH)."),
) -> None:
    """Run the moderation service (API, review queue and reviewer UI)."""
    import uvicorn

    from photosieve.service.app import create_app
    from photosieve.service.config import Settings
    from photosieve.service.startup import StartupError

    settings = Settings() if bundle is None else Settings(bundle_path=bundle)
    try:
        app = create_app(settings)
    except StartupError as exc:  # unwritable folder, missing database beside photos
        raise fail_startup(exc) from exc
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    table = Table(title="photosieve service")
    table.add_column("setting")
    table.add_column("value")
    table.add_row("URL", f"http://{host}:{port}/")
    table.add_row("database", settings.resolved_database_url)
    table.add_row("images", str(settings.resolved_data_dir))
    table.add_row("model", app.state.model_version)
    Console().print(table)
    uvicorn.run(app, host=host, port=port, log_level="info")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option("reviewer", help="reviewer or admin."),
    password: str | None = typer.Option(None, help="Password (prompted when omitted)."),
) -> None:
    """Create a reviewer or admin account."""
    from photosieve.service.security import create_user

    if role not in ("reviewer", "admin"):
        raise typer.BadParameter("role must be 'reviewer' or 'admin'", param_hint="--role")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    sessions = _sessions()
    with sessions() as session:  # type: ignore[operator]
        try:
            user = create_user(session, name, password, role)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        session.commit()
        typer.echo(f"created {user.role} {user.username!r} (id {user.id})")


@apikey_app.command("create")
def apikey_create(name: str = typer.Argument(..., help="Client name, e.g. 'forum'.")) -> None:
    """Create an API key for an upload client; the key is printed once, never stored."""
    from photosieve.store.accounts import create_api_key

    sessions = _sessions()
    with sessions() as session:  # type: ignore[operator]
        try:
            _, key = create_api_key(session, name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        session.commit()
    typer.echo(f"API key for {name!r} (shown once; send as `Authorization: Bearer <key>`):")
    typer.echo(key)


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("serve")(serve)
    app.add_typer(user_app, name="user")
    app.add_typer(apikey_app, name="apikey")
