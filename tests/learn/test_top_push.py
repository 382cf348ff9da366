"""The top-push option of the heads: it lifts the lowest-scored positives over the negatives.

Toy problem: a tight main positive cluster far along x and a small cluster of "hard" positives
off to the side (along y), between broad negatives. Plain BCE orients a linear head by the many
main positives, so the hard ones rank below dozens of negatives; the top-push term trades a
little of the bulk for the tail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from photosieve.learn.head import MLPHead
from photosieve.learn.loop import top_push_term


def tail_toy(seed: int, d: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    neg = rng.normal(size=(1000, d))
    pos = rng.normal(size=(300, d)) * 0.5
    pos[:, 0] += 4.0
    hard = rng.normal(size=(8, d)) * 0.3
    hard[:, 0] += 1.0
    hard[:, 1] += 3.5
    X = np.r_[neg, pos, hard].astype(np.float32)
    y = np.r_[np.zeros(1000), np.ones(308)].astype(np.int64)
    return X, y


def negatives_above_lowest_positive(scores: np.ndarray, y: np.ndarray) -> int:
    return int((scores[y == 0] >= scores[y == 1].min()).sum())


def fit(top_push: float, seed: int = 0) -> MLPHead:
    X, y = tail_toy(1)
    head = MLPHead(
        hidden=(),
        epochs=60,
        lr=1e-2,
        imbalance="balanced",
        top_push=top_push,
        top_push_k=4,
        seed=seed,
    )
    return head.fit(X, y)


def test_top_push_raises_the_lowest_positive_rank() -> None:
    plain, pushed = fit(0.0), fit(1.0)
    for data_seed in (1, 2):  # the training set and a fresh draw of the same problem
        X, y = tail_toy(data_seed)
        before = negatives_above_lowest_positive(plain.decision_function(X), y)
        after = negatives_above_lowest_positive(pushed.decision_function(X), y)
        assert after <= 0.8 * before, (data_seed, before, after)
    X, y = tail_toy(2)
    hard = slice(-8, None)  # the hard positives: share of negatives above each, averaged
    share = [
        float(np.mean([(s[y == 0] >= v).mean() for v in s[hard]]))
        for s in (plain.decision_function(X), pushed.decision_function(X))
    ]
    assert share[1] < 0.7 * share[0], share


def test_top_push_is_deterministic_and_off_by_default() -> None:
    X, _ = tail_toy(2)
    np.testing.assert_array_equal(fit(1.0).decision_function(X), fit(1.0).decision_function(X))
    assert MLPHead().top_push == 0.0
    default = MLPHead(hidden=(), epochs=60, lr=1e-2, imbalance="balanced", top_push_k=4)
    np.testing.assert_array_equal(
        default.fit(*tail_toy(1)).decision_function(X), fit(0.0).decision_function(X)
    )


def test_top_push_term_moves_only_the_tail() -> None:
    logits = torch.tensor([5.0, 4.0, -1.0, 3.0, 0.5, -2.0], requires_grad=True)
    y = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    term = top_push_term(logits, y, k=1, margin=1.0)
    term.backward()
    assert logits.grad is not None
    grad = logits.grad.numpy()
    # only the lowest positive (−1) and the highest negative (3) are pushed: up and down
    assert grad[2] < 0 < grad[3]
    assert np.count_nonzero(grad) == 2
    no_negatives = top_push_term(logits[:3], y[:3], k=2, margin=1.0)
    assert no_negatives.item() == 0.0


def test_top_push_parameters_are_checked() -> None:
    X, y = tail_toy(1)
    with pytest.raises(ValueError, match="top_push"):
        MLPHead(top_push=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="top_push_k"):
        MLPHead(top_push_k=0).fit(X, y)
