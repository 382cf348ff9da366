"""HTTP routes split by role: `api` (clients), `review` (reviewers, admins), `models` (admins:
the model registry), `health`, `ui`."""
