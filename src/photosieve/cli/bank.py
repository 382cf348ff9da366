"""CLI commands of the known-bad bank: `photosieve bank import FILE` / `bank export FILE` —
PDQ hash lists in the HMA/ThreatExchange text format (`store.hashlist`), thin wrappers.

Import checks the whole file first: a bad line (number and reason) refuses it, nothing banked.
Imported hashes are confirmed (a match is removed at once, nothing queued) unless
`--unconfirmed` (a person looks at every match). The running service picks up imported hashes
at its next upload (its index follows the bank by entry id).
"""

from __future__ import annotations

from pathlib import Path

import typer

from photosieve.cli.database import open_database, settings_for, workdir_callback

bank_app = typer.Typer(
    help="Import and export the known-bad PDQ hash bank.",
    no_args_is_help=True,
    callback=workdir_callback,
)


@bank_app.command("import")
def bank_import(
    file: Path = typer.Argument(..., help="Hash list: one `pdq_hex[,quality[,name]]` a line."),
    name: str | None = typer.Option(None, help="The list's name [default: the file's name]."),
    unconfirmed: bool = typer.Option(
        False, "--unconfirmed", help="Send every match to a person instead of removing it."
    ),
) -> None:
    """Bank the PDQ hashes of FILE (all or nothing)."""
    from photosieve.store.db import begin_write
    from photosieve.store.hashlist import HashListError, import_hashes, parse

    min_quality = settings_for().pdq_min_quality
    try:
        with file.open(encoding="utf-8", newline="") as lines:
            parsed = parse(lines, min_quality=min_quality)
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {file}: {exc}", param_hint="FILE") from exc
    except HashListError as exc:
        typer.echo(f"photosieve: {file}: {exc}", err=True)
        raise typer.Exit(1) from exc
    with open_database() as session:
        begin_write(session)
        added, already = import_hashes(
            session, parsed.hashes, list_name=name or file.name, confirmed=not unconfirmed
        )
        session.commit()
    typer.echo(
        f"banked {added} PDQ hashes from {file.name} ({already} already banked, "
        f"{parsed.duplicates} repeated in the file, {parsed.low_quality} below quality "
        f"{min_quality} left out)"
    )


@bank_app.command("export")
def bank_export(
    file: Path = typer.Argument(..., help="Where to write the hash list ('-': stdout)."),
) -> None:
    """Write the bank's active PDQ hashes as a hash list."""
    import sys

    from photosieve.store.hashlist import export_rows, write

    with open_database() as session:
        if str(file) == "-":
            count = write(export_rows(session), sys.stdout)
            return
        partial = file.with_name(file.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                count = write(export_rows(session), out)
            partial.replace(file)  # a failure half-way leaves no half-written list
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise typer.BadParameter(f"cannot write {file}: {exc}", param_hint="FILE") from exc
    typer.echo(f"wrote {count} PDQ hashes to {file}")


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.add_typer(bank_app, name="bank")
