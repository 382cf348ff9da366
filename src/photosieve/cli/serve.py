"""CLI commands of the serve stage: `serve`, `apikey create` (thin wrappers); `user …` lives
in `cli/users.py`.

Each command reads `Settings` from the environment (`PHOTOSIEVE_*`), so `apikey create` writes
to the same database `serve` uses. `serve` refuses a placeholder or weak
`PHOTOSIEVE_SECRET_KEY`; without one it creates (once) and reuses `<workdir>/service/secret_key`.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from photosieve.cli import users

apikey_app = typer.Typer(help="Manage API keys of upload clients.", no_args_is_help=True)


def _sessions() -> object:
    from photosieve.service.config import Settings
    from photosieve.store.db import make_engine, make_sessionmaker, migrate

    engine = make_engine(Settings().resolved_database_url)
    migrate(engine)
    return make_sessionmaker(engine)


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    bundle: Path | None = typer.Option(None, help="Model bundle folder (PHOTOSIEVE_BUNDLE_PATH)."),
) -> None:
    """Run the moderation service (API, review queue and reviewer UI)."""
    import uvicorn
    from pydantic import ValidationError

    from photosieve.service.app import create_app
    from photosieve.service.config import Settings

    try:
        settings = Settings() if bundle is None else Settings(bundle_path=bundle)
        app = create_app(settings)
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
    table.add_row("images", str(settings.resolved_data_dir))
    table.add_row("model", app.state.model_version)
    key_source = "PHOTOSIEVE_SECRET_KEY" if settings.secret_key else str(settings.secret_key_file)
    table.add_row("session key", key_source)
    Console().print(table)
    uvicorn.run(app, host=host, port=port, log_level="info")


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
    users.register(app)
    app.add_typer(apikey_app, name="apikey")
