"""The heads: learning a separable toy problem, the estimator contract, save/load round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from photosieve.learn.ensemble import EnsembleHead
from photosieve.learn.head import LogisticHead, MLPHead, make_activation
from photosieve.learn.metrics import average_precision
from photosieve.learn.persist import load_head, save_head


def toy(n: int, seed: int, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian blobs 4σ apart along a random direction: linearly separable in practice."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(np.int64)
    direction = np.random.default_rng(99).normal(size=d)
    direction /= np.linalg.norm(direction)
    X = rng.normal(size=(n, d)) + 4.0 * np.outer(y, direction) + 3.0
    return X.astype(np.float32), y


@pytest.mark.parametrize(
    "head",
    [
        MLPHead(hidden=(32,), epochs=30, lr=1e-2, batch_size=64),
        MLPHead(hidden=(32, 16), activation="gelu", dropout=0.1, epochs=30, lr=1e-2, batch_size=64),
        MLPHead(
            hidden=(32,), epochs=30, lr=1e-2, batch_size=64, imbalance="balanced", loss="focal"
        ),
        LogisticHead(),
    ],
    ids=["mlp", "mlp-gelu", "mlp-balanced-focal", "logistic"],
)
def test_head_learns_separable_toy_problem(head: MLPHead) -> None:
    X, y = toy(400, seed=1)
    Xv, yv = toy(200, seed=2)
    fitted = head.fit(X, y, X_val=Xv, y_val=yv)
    assert fitted is head
    scores = head.score(Xv)
    assert scores.shape == (200,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert average_precision(scores, yv) > 0.98
    assert scores[yv == 1].mean() > 0.8 > 0.2 > scores[yv == 0].mean()
    proba = head.predict_proba(Xv)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], scores)


def test_labels_may_be_strings() -> None:
    X, y = toy(200, seed=3)
    head = LogisticHead().fit(X, np.where(y == 1, "offensive", "ok"))
    assert average_precision(head.score(X), y) > 0.98


def test_scoring_before_fit_raises_not_fitted() -> None:
    X, _ = toy(10, seed=0)
    for head in (MLPHead(), LogisticHead(), EnsembleHead(MLPHead())):
        with pytest.raises(NotFittedError, match="not fitted"):
            head.score(X)
    with pytest.raises(NotFittedError, match="not fitted"):
        save_head(MLPHead(), Path("unused.pt"))


def test_bad_inputs_raise_actionable_errors() -> None:
    X, y = toy(50, seed=0)
    with pytest.raises(ValueError, match="unknown activation 'swish'; known: gelu, relu"):
        MLPHead(activation="swish").fit(X, y)
    with pytest.raises(ValueError, match="both classes"):
        MLPHead().fit(X, np.zeros(50, dtype=int))
    with pytest.raises(ValueError, match="2-D"):
        MLPHead().fit(X[0], y[:1])
    with pytest.raises(ValueError, match="imbalance"):
        MLPHead(imbalance="smote").fit(X, y)
    head = LogisticHead().fit(X, y)
    with pytest.raises(ValueError, match="expected 16 features"):
        head.score(X[:, :8])
    with pytest.raises(ValueError, match="known: gelu, relu, sigmoid, tanh"):
        make_activation("nope")


def test_fit_is_deterministic_for_a_seed() -> None:
    X, y = toy(300, seed=4)
    a = MLPHead(hidden=(16,), epochs=3, seed=7).fit(X, y).score(X)
    b = MLPHead(hidden=(16,), epochs=3, seed=7).fit(X, y).score(X)
    c = MLPHead(hidden=(16,), epochs=3, seed=8).fit(X, y).score(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    "head",
    [
        MLPHead(hidden=(16, 8), activation="tanh", epochs=3),
        LogisticHead(C=0.5),
        EnsembleHead(MLPHead(hidden=(8,), epochs=2), n_members=2),
    ],
    ids=["mlp", "logistic", "ensemble"],
)
def test_save_load_round_trip_gives_identical_scores(head: MLPHead, tmp_path: Path) -> None:
    X, y = toy(200, seed=5)
    head.fit(X, y)
    path = save_head(head, tmp_path / "head.pt")
    loaded = load_head(path)
    assert type(loaded) is type(head)
    assert loaded.get_params().keys() == head.get_params().keys()
    np.testing.assert_array_equal(loaded.score(X), head.score(X))


def test_load_head_rejects_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no head file"):
        load_head(tmp_path / "missing.pt")


def test_an_ensemble_fitted_in_worker_processes_is_the_serial_one() -> None:
    """`n_jobs=2` fits the members in spawned processes: the same heads, the same epoch records
    (replayed member by member, in seed order), the same refusals."""
    X, y = toy(300, seed=9)
    Xv, yv = toy(100, seed=10)
    base = MLPHead(hidden=(16,), epochs=4, patience=2, seed=3)
    records: dict[int, list[tuple[int, float]]] = {1: [], 2: []}
    heads = {}
    for jobs in (1, 2):

        def seen(epoch: int, record: dict[str, object], jobs: int = jobs) -> None:
            records[jobs].append((epoch, float(record["loss"])))  # type: ignore[arg-type]

        ensemble = EnsembleHead(base, n_members=3, n_jobs=jobs)
        heads[jobs] = ensemble.fit(X, y, X_val=Xv, y_val=yv, on_epoch=seen)
    np.testing.assert_array_equal(heads[2].decision_function(Xv), heads[1].decision_function(Xv))
    assert [m.seed for m in heads[2].members_] == [3, 4, 5]
    assert heads[2].best_epoch_ == heads[1].best_epoch_
    assert records[2] == records[1] and len(records[1]) >= 3 * 3
    with pytest.raises(ValueError, match="n_jobs must be ≥ 1"):
        EnsembleHead(base, n_members=2, n_jobs=0).fit(X, y)
