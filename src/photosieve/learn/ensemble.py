"""An average of several fitted heads (e.g. the same MLP with different seeds).

Averaging the logits of a few independently seeded heads smooths the ranking at the extreme
high-recall end, where a single head's few lowest-scored positives decide the threshold.
The members are independent, so with `n_jobs` > 1 they train side by side in spawned worker
processes (each with the parent's torch thread count, so the fitted weights are the ones a
serial fit gives); their per-epoch records reach `on_epoch` as each member finishes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from photosieve.learn.grads import warn_if_vanishing
from photosieve.learn.head import LogitScorer

EpochCallback = Callable[[int, dict[str, Any]], None]


def _fit_member(
    member: Any, X: np.ndarray, y: np.ndarray, X_val: Any, y_val: Any, threads: int
) -> Any:
    """One member's fit in a worker process (module level: spawn pickles it by name)."""
    torch.set_num_threads(threads)
    return member.fit(X, y, X_val=X_val, y_val=y_val)


class EnsembleHead(LogitScorer):
    """Fits `n_members` copies of `base` with seeds `base.seed + i`; scores from the mean logit.

    `n_jobs`: worker processes fitting members side by side (1 = in this process, one after
    another). It changes the wall time, not the fitted heads.
    """

    def __init__(self, base: Any, n_members: int = 3, n_jobs: int = 1) -> None:
        self.base = base
        self.n_members = n_members
        self.n_jobs = n_jobs

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"base": self.base, "n_members": self.n_members, "n_jobs": self.n_jobs}

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> EnsembleHead:
        if self.n_members < 1:
            raise ValueError(f"n_members must be ≥ 1, got {self.n_members}")
        if self.n_jobs < 1:
            raise ValueError(f"n_jobs must be ≥ 1, got {self.n_jobs}")
        seed = self.base.get_params()["seed"]
        unfitted = [
            type(self.base)(**(self.base.get_params() | {"seed": seed + i}))
            for i in range(self.n_members)
        ]
        workers = min(self.n_jobs, self.n_members)
        if workers == 1:
            members = [m.fit(X, y, X_val=X_val, y_val=y_val, on_epoch=on_epoch) for m in unfitted]
            return self._set_members(members)
        spawn = multiprocessing.get_context("spawn")  # fork is unsafe beside torch's threads
        threads = torch.get_num_threads()
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            futures = [pool.submit(_fit_member, m, X, y, X_val, y_val, threads) for m in unfitted]
            members = []
            for future in futures:  # in seed order: the records arrive member by member
                member = future.result()
                warn_if_vanishing(member.gradient_health_)  # the worker's warning stayed there
                if on_epoch is not None:
                    for record in member.history_:
                        on_epoch(record["epoch"], record)
                members.append(member)
        return self._set_members(members)

    @classmethod
    def from_members(cls, members: Sequence[Any]) -> EnsembleHead:
        """An ensemble of already-fitted heads (used when loading)."""
        if not members:
            raise ValueError("an ensemble needs at least one member")
        return cls(members[0], len(members))._set_members(list(members))

    def _set_members(self, members: list[Any]) -> EnsembleHead:
        self.members_ = members
        self.n_features_in_ = members[0].n_features_in_
        self.best_epoch_ = [m.best_epoch_ for m in members]
        self.gradient_health_ = members[0].gradient_health_
        self.history_ = members[0].history_
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "members_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this EnsembleHead is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Mean member logit (N,)."""
        self._check_fitted()
        return np.mean([m.decision_function(X) for m in self.members_], axis=0)
