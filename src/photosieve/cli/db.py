"""CLI commands of the store: `db upgrade` (run the Alembic migrations to head) — thin wrappers.

`photosieve db upgrade` is also the deliberate way to create an empty database where the
service refuses to create one silently (a missing database beside stored photos; see
`photosieve.service.startup`).
"""

from __future__ import annotations

import typer

from photosieve.cli.database import fail_startup, settings_for, workdir_callback

db_app = typer.Typer(
    help="Manage the service database.", no_args_is_help=True, callback=workdir_callback
)


@db_app.command("upgrade")
def upgrade(
    revision: str = typer.Option("head", help="Alembic revision to upgrade to."),
) -> None:
    """Create the database if needed and run its migrations up to REVISION (default: head)."""
    from photosieve.service.startup import StartupError, ensure_writable, sqlite_path
    from photosieve.store.db import current_revision, make_engine, migrate

    url = settings_for().resolved_database_url
    path = sqlite_path(url)
    try:
        if path is not None:
            ensure_writable(path.parent, "database folder")
    except StartupError as exc:
        raise fail_startup(exc) from exc
    engine = make_engine(url)
    try:
        before = current_revision(engine)
        migrate(engine, revision)
        after = current_revision(engine)
    finally:
        engine.dispose()
    shown = path if path is not None else engine.url.render_as_string(hide_password=True)
    typer.echo(f"database {shown}: {before or 'empty'} → {after}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.add_typer(db_app, name="db")
