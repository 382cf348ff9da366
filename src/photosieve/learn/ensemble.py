"""An average of several fitted heads (e.g. the same MLP with different seeds).

Averaging the logits of a few independently seeded heads smooths the ranking at the extreme
high-recall end, where a single head's few lowest-scored positives decide the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from photosieve.learn.head import LogitScorer


class EnsembleHead(LogitScorer):
    """Fits `n_members` copies of `base` with seeds `base.seed + i`; scores from the mean logit."""

    def __init__(self, base: Any, n_members: int = 3) -> None:
        self.base = base
        self.n_members = n_members

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"base": self.base, "n_members": self.n_members}

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> EnsembleHead:
        if self.n_members < 1:
            raise ValueError(f"n_members must be ≥ 1, got {self.n_members}")
        members = []
        for i in range(self.n_members):
            params = self.base.get_params() | {"seed": self.base.get_params()["seed"] + i}
            member = type(self.base)(**params)
            members.append(member.fit(X, y, X_val=X_val, y_val=y_val, on_epoch=on_epoch))
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
