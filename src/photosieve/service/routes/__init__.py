"""HTTP routes split by role: `api` (clients), `review` (reviewers, admins), `health`, `ui`."""
