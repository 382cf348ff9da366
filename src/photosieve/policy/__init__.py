"""Policy stage: certified decision thresholds and the decision bands they define."""
