"""CLI commands of user administration: `photosieve user add|list|disable|enable|set-password|
signout-all` (thin wrappers over `service.users`).

Each command reads `Settings` from the environment (`PHOTOSIEVE_*`), so it changes the same
database `serve` uses; the running service sees a change at the user's next request.
"""

from __future__ import annotations

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import open_database, settings_for, workdir_callback

user_app = typer.Typer(
    help="Manage reviewer and admin accounts.", no_args_is_help=True, callback=workdir_callback
)


def _password(password: str | None) -> str:
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="Username."),
    role: str = typer.Option("reviewer", help="reviewer or admin."),
    password: str | None = typer.Option(None, help="Password (prompted when omitted)."),
) -> None:
    """Create a reviewer or admin account."""
    from photosieve.service import users

    if role not in ("reviewer", "admin"):
        raise typer.BadParameter("role must be 'reviewer' or 'admin'", param_hint="--role")
    password = _password(password)
    with open_database() as db:
        try:
            user = users.add(db, name, password, role)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        typer.echo(f"created {user.role} {user.username!r} (id {user.id})")


@user_app.command("list")
def user_list() -> None:
    """List accounts with their live sessions and last sign-in."""
    from photosieve.service import users

    with open_database() as db:
        rows = users.summaries(db, idle_seconds=settings_for().session_idle_seconds)
    table = Table(title="photosieve users")
    for column in ("id", "username", "role", "active", "live sessions", "last sign-in (UTC)"):
        table.add_column(column)
    for row in rows:
        last = row.last_login.strftime("%Y-%m-%d %H:%M") if row.last_login else "never"
        active = "yes" if row.active else "disabled"
        table.add_row(str(row.id), row.username, row.role, active, str(row.live_sessions), last)
    make_console().print(table)


@user_app.command("disable")
def user_disable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Disable an account: it cannot sign in, its sessions end, its claimed items go back."""
    from photosieve.service import users

    with open_database() as db:
        try:
            done = users.set_active(db, name, False)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(
        f"disabled {name!r}: {done.sessions} sessions revoked, "
        f"{done.released_items} claimed items back in the queue"
    )


@user_app.command("enable")
def user_enable(name: str = typer.Argument(..., help="Username.")) -> None:
    """Re-enable a disabled account."""
    from photosieve.service import users

    with open_database() as db:
        try:
            users.set_active(db, name, True)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"enabled {name!r}")


@user_app.command("set-password")
def user_set_password(
    name: str = typer.Argument(..., help="Username."),
    password: str | None = typer.Option(None, help="New password (prompted when omitted)."),
) -> None:
    """Set a new password; every session of the account ends."""
    from photosieve.service import users

    password = _password(password)
    with open_database() as db:
        try:
            done = users.set_password(db, name, password)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"password of {name!r} set: {done.sessions} sessions revoked")


@user_app.command("signout-all")
def user_signout_all(name: str = typer.Argument(..., help="Username.")) -> None:
    """Sign an account out everywhere (its claimed items go back to the queue)."""
    from photosieve.service import users

    with open_database() as db:
        try:
            done = users.sign_out_everywhere(db, name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    typer.echo(
        f"signed {name!r} out everywhere: {done.sessions} sessions revoked, "
        f"{done.released_items} claimed items back in the queue"
    )


def register(app: typer.Typer) -> None:
    """Add the user commands to the app."""
    app.add_typer(user_app, name="user")
