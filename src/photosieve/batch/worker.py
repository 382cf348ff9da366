"""What a batch worker process or Ray actor holds and does, without torch.

A worker gets a `WorkerModel` — the backbone's and the head's ONNX graphs as bytes, the
preprocessing, the policy and the bundle version, prepared once by the driver
(`engines.worker_model`) — runs both graphs in onnxruntime and applies the policy. It imports
neither torch nor the bundle code, so it starts sooner (importing torch took a worker 1.3–1.6 s,
only to run the head) and holds less memory.

`WorkerScorer.score_decoded` turns one batch of decoded photos into scores, decisions and errors:
a photo with several frames takes its highest-scoring frame, as the service does. A cascade
bundle (`bundle.Refiner`) ships its second backbone and head too (`WorkerRefiner`): frames at or
above the gate are resized for the second backbone and scored on both embeddings, the rest get
the composite score 0 (`learn.logits.gated_scores`, which `bundle.cascade_scores` uses too).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from photosieve.batch.decode import decode_batch, decode_frames, die_with_parent, model_input
from photosieve.learn.logits import gated_scores, probabilities
from photosieve.policy.bands import DecisionPolicy, decide_or_review
from photosieve.vision.preprocess import PreprocessConfig
from photosieve.vision.runtime import INPUT_NAME, create_session

Scored = tuple[np.ndarray, list[str], list[str]]  # scores (NaN: not decoded), decisions, errors
SecondInputs = Callable[[np.ndarray], np.ndarray]  # frame indices → the second backbone's inputs


@dataclass(frozen=True)
class WorkerRefiner:
    """A cascade's second stage as plain data: its backbone and head graphs, preprocessing (the
    same decode as the first stage's) and gate."""

    backbone_onnx: bytes
    head_onnx: bytes
    preprocess: PreprocessConfig
    gate: float


@dataclass(frozen=True)
class WorkerModel:
    """Everything a worker needs to score, as plain data (pickled once to each worker)."""

    backbone_onnx: bytes
    head_onnx: bytes
    preprocess: PreprocessConfig
    policy: DecisionPolicy | None
    version: str
    refiner: WorkerRefiner | None = None


class WorkerScorer:
    """One worker's backbone and head sessions (one intra-op thread by default) and policy."""

    def __init__(self, model: WorkerModel, *, threads: int = 1) -> None:
        self.model = model
        self.backbone = create_session(model.backbone_onnx, threads=threads)
        self.head = create_session(model.head_onnx, threads=1)
        self.head_input = self.head.get_inputs()[0].name
        refiner = model.refiner
        if refiner is not None:
            self.refine_backbone = create_session(refiner.backbone_onnx, threads=threads)
            self.refine_head = create_session(refiner.head_onnx, threads=1)
            self.refine_head_input = self.refine_head.get_inputs()[0].name

    def scores(self, frames: np.ndarray, second: SecondInputs | None = None) -> np.ndarray:
        """P(offensive) (F,) for uint8 model inputs (F, H, W, 3); a cascade's composite score,
        with `second` giving the second backbone's inputs of the frames past the gate."""
        (embeddings,) = self.backbone.run(None, {INPUT_NAME: frames})
        X = np.asarray(embeddings, np.float32)
        (logits,) = self.head.run(None, {self.head_input: X})
        first = probabilities(logits)
        refiner = self.model.refiner
        if refiner is None:
            return first
        if second is None:
            raise ValueError("a cascade needs its second backbone's inputs")

        def refined(rows: np.ndarray) -> np.ndarray:
            (X2,) = self.refine_backbone.run(None, {INPUT_NAME: second(rows)})
            both = np.concatenate([X[rows], np.asarray(X2, np.float32)], axis=1)
            return probabilities(self.refine_head.run(None, {self.refine_head_input: both})[0])

        return gated_scores(first, refiner.gate, refined)

    def decision(self, score: float) -> str:
        """The policy's band for a score ("review" without a policy, as the service)."""
        return decide_or_review(self.model.policy, score).value

    def score_decoded(
        self, decoded: Sequence[list[np.ndarray] | str], second: SecondInputs | None = None
    ) -> Scored:
        """Scores, decisions and errors of one batch of decoded photos (errors pass through);
        `second` as in `scores`, over the batch's frames in order."""
        scores = np.full(len(decoded), np.nan)
        errors = [d if isinstance(d, str) else "" for d in decoded]
        owners = [i for i, d in enumerate(decoded) if not isinstance(d, str) for _ in d]
        if owners:
            frames = np.stack([f for d in decoded if not isinstance(d, str) for f in d])
            for i, s in zip(owners, self.scores(frames, second), strict=True):
                if np.isnan(scores[i]) or s > scores[i]:
                    scores[i] = s
        decisions = ["" if np.isnan(s) else self.decision(float(s)) for s in scores]
        return scores, decisions, errors

    def score_paths(self, paths: list[str]) -> Scored:
        """Decode a batch of photo files and score it (a cascade: one decode for both stages,
        resized for the second only for the frames past the gate)."""
        cfg, refiner = self.model.preprocess, self.model.refiner
        if refiner is None:
            return self.score_decoded(decode_batch(paths, cfg))
        photos = [decode_frames(p, cfg) for p in paths]
        frames = [f for p in photos if not isinstance(p, str) for f in p]
        decoded = [p if isinstance(p, str) else [model_input(f, cfg) for f in p] for p in photos]

        def second(rows: np.ndarray) -> np.ndarray:
            return np.stack([model_input(frames[int(r)], refiner.preprocess) for r in rows])

        return self.score_decoded(decoded, second)


_WORKER: WorkerScorer | None = None  # this local worker process's scorer


def start_worker(model: WorkerModel) -> None:
    """Local worker initializer: die with the parent; hold the model's sessions."""
    die_with_parent()
    global _WORKER
    _WORKER = WorkerScorer(model)


def score_batch(paths: list[str]) -> Scored:
    """In a local worker: decode a batch of paths and score it."""
    if _WORKER is None:
        raise RuntimeError("worker not started")
    return _WORKER.score_paths(paths)


class ScoreBatches:
    """A Ray Data actor: holds the model's sessions, then decodes and scores batches of paths."""

    def __init__(self, model: WorkerModel) -> None:
        self.scorer = WorkerScorer(model)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        scores, decisions, errors = self.scorer.score_paths(paths)
        return {
            "path": np.asarray(paths, dtype=object),
            "score": scores,
            "decision": np.asarray(decisions, dtype=object),
            "error": np.asarray(errors, dtype=object),
        }
