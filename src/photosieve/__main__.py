"""`python -m photosieve` runs the console command."""

from photosieve.cli import app

app()
