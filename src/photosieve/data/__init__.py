"""Data stage: ingest labelled photos, group duplicates, plan the split, read/write manifests.

`ingest` (validate + hash + group) → `split` (planner) → a manifest file (`manifest`) that every
later stage reads with `read_manifest`.
"""
