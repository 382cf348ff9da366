"""CLI commands `photosieve client webhook set|show|remove` (thin wrappers over
`store.webhooks`; URLs checked by `service.webhooks.check_url`).

`set` prints the signing secret once when it is created (or `--rotate`d); `show` prints the URL,
the secret and the latest deliveries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.cli.database import open_database, settings_for

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from photosieve.store.models import Client

webhook_app = typer.Typer(
    help="A client's signed webhook: final decisions POSTed to its URL.", no_args_is_help=True
)


def _client(session: Session, name: str) -> Client:
    from photosieve.store.accounts import get_client

    client = get_client(session, name)
    if client is None:
        raise typer.BadParameter(f"no client {name!r}; `photosieve client list` shows them")
    return client


@webhook_app.command("set")
def webhook_set(
    name: str = typer.Argument(..., help="Client name."),
    url: str = typer.Argument(..., help="Callback URL (https://…)."),
    rotate: bool = typer.Option(False, help="Make a new signing secret (the old one stops)."),
) -> None:
    """Send the client's final decisions to URL, signed (a secret is made on first use)."""
    from photosieve.service.webhooks import WebhookUrlError, check_url
    from photosieve.store import webhooks
    from photosieve.store.db import begin_write

    allow = settings_for().webhook_allow_http_localhost
    try:
        checked = check_url(url, allow_http_localhost=allow)
    except WebhookUrlError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with open_database() as session:
        begin_write(session)
        client = _client(session, name)
        had = client.webhook_secret
        webhooks.set_webhook(session, client, checked, rotate=rotate)
        session.commit()
        typer.echo(f"client {client.name!r} webhook: {checked}")
        if client.webhook_secret != had:
            typer.echo(
                f"signing secret (shown once here; `show` prints it): {client.webhook_secret}"
            )


@webhook_app.command("show")
def webhook_show(name: str = typer.Argument(..., help="Client name.")) -> None:
    """The client's webhook URL, signing secret and latest deliveries."""
    from photosieve.store import webhooks

    with open_database() as session:
        client = _client(session, name)
        typer.echo(f"url: {client.webhook_url or '(none: the client polls)'}")
        typer.echo(f"secret: {client.webhook_secret or '-'}")
        table = Table(title="latest deliveries")
        for col in ("event", "upload", "status", "attempts", "last answer", "next attempt"):
            table.add_column(col)
        for row, owner in webhooks.recent(session, 20):
            if owner != client.name:
                continue
            answer = str(row.last_status_code or row.last_error or "-")
            nxt = (
                row.next_attempt_at.isoformat(timespec="seconds")
                if row.status == "pending"
                else "-"
            )
            table.add_row(row.event_id, row.upload_id, row.status, str(row.attempts), answer, nxt)
        make_console().print(table)


@webhook_app.command("remove")
def webhook_remove(name: str = typer.Argument(..., help="Client name.")) -> None:
    """Stop sending the client webhooks (its secret is forgotten)."""
    from photosieve.store import webhooks
    from photosieve.store.db import begin_write

    with open_database() as session:
        begin_write(session)
        client = _client(session, name)
        webhooks.set_webhook(session, client, None, rotate=False)
        session.commit()
    typer.echo(f"client {name!r} has no webhook now")
