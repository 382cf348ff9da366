"""Scoring large backlogs (a backfill after a model is promoted): photos → scores and bands.

`job.score_backlog` streams a folder or manifest through an engine in fixed chunks, writing one
Parquet part per chunk, so a killed run resumes where it stopped and produces the same file.
Engines: `engines.LocalEngine` (decoding in worker processes ahead of onnxruntime batches) and
`ray_engine.RayEngine` (the same scoring on Ray Data; optional extra `photosieve[ray]`).
"""
