"""How `photosieve diagnose` shows a `Diagnosis`: a Rich table, the largest gap and its remedies.

Presentation only; the numbers come from `photosieve.evaluate.diagnose`.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from photosieve.cli.console import console as make_console
from photosieve.evaluate.diagnose import GAP_TITLES, Diagnosis


def print_diagnosis(diagnosis: Diagnosis, console: Console | None = None) -> None:
    """The diagnosis as a Rich table plus the largest gap and its remedies."""
    console = console or make_console()
    op = diagnosis.operating
    table = Table(title="Error analysis: bias, variance, data mismatch")
    table.add_column("")
    table.add_column(f"at operating threshold {op.threshold:.4f}", justify="right")
    table.add_column("at 0.5", justify="right")
    table.add_column("at each split's own 99%-recall thr.", justify="right")
    for row in diagnosis.rows():
        style = "bold red" if row["largest"] else ("dim" if row["kind"] == "error" else "")
        sign = "+" if row["kind"] == "gap" else ""
        table.add_row(
            f"{row['name']} error" if row["kind"] == "error" else row["name"],
            _pct(row["operating"], sign),
            _pct(row["at_0.5"], sign),
            _pct(row["own_recall"], sign),
            style=style,
        )
    console.print(table)
    console.print(f"operating threshold from: {diagnosis.operating_source}")
    for note in diagnosis.notes:
        console.print(note, style="dim")
    if diagnosis.largest:
        console.print(
            f"[bold]largest gap:[/bold] {GAP_TITLES[diagnosis.largest]} — "
            f"usual remedies: {diagnosis.remedies}"
        )
    else:
        console.print("no positive gap: the model is at human level on every split")
    own = diagnosis.own_recall
    if own is not None and own.largest and own.largest != diagnosis.largest:
        console.print(
            f"ranking alone (each split at its own threshold) points to "
            f"{GAP_TITLES[own.largest]}: part of the gap above is the operating threshold "
            "transferring between splits, not the ranking"
        )


def _pct(value: float, sign: str = "") -> str:
    if math.isnan(value):
        return "—"
    return f"{value * 100:{sign}.2f}%"
