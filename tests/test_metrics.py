import numpy as np
import pytest
from sklearn import metrics as sk

from arenapref.evaluation.metrics import (
    classification_metrics,
    expected_calibration_error,
    log_loss,
    verdicts,
)


def test_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 500)
    probs = rng.dirichlet([1, 1, 1], 500)
    probs[np.arange(200), labels[:200]] += 1.0  # make it better than chance
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(labels, probs)
    preds = probs.argmax(1)
    assert np.isclose(m["log_loss"], sk.log_loss(labels, probs, labels=[0, 1, 2]))
    assert np.isclose(m["accuracy"], sk.accuracy_score(labels, preds))
    p, r, f, _ = sk.precision_recall_fscore_support(labels, preds, labels=[0, 1, 2], zero_division=0)
    assert np.isclose(m["precision_macro"], p.mean()) and np.isclose(m["recall_macro"], r.mean())
    assert np.isclose(m["f1_macro"], f.mean())
    assert np.isclose(m["f1_tie"], f[2])
    assert m["confusion"] == sk.confusion_matrix(labels, preds, labels=[0, 1, 2]).tolist()
    prior = np.bincount(labels, minlength=3) / len(labels)
    assert np.isclose(m["prior_log_loss"], sk.log_loss(labels, np.tile(prior, (500, 1)), labels=[0, 1, 2]))


def test_uniform_log_loss_and_ece():
    labels = np.array([0, 1, 2, 0])
    assert np.isclose(log_loss(labels, np.full((4, 3), 1 / 3)), np.log(3))
    # perfectly calibrated: confidence 1 and always right
    assert expected_calibration_error(labels, np.eye(3)[labels]) == 0.0
    # always 90% confident, right half of the time -> ECE 0.4
    probs = np.tile([0.9, 0.05, 0.05], (4, 1))
    assert np.isclose(expected_calibration_error(np.array([0, 0, 1, 2]), probs), 0.4)


def test_length_slices_by_hand():
    from arenapref.evaluation.metrics import length_slices

    labels = np.array([0, 1, 0, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4], [0.1, 0.8, 0.1]])
    len_a, len_b = np.array([5, 50, 90, 10, 7]), np.array([10, 20, 30, 1, 7])
    # row 0: A shorter, A won -> shorter won; row 1: B shorter, B won -> shorter won; row 2: A longer, A won ->
    # longer won; row 3: a tie (neither); row 4: equal lengths (neither).
    out = length_slices(labels, probs, len_a, len_b)
    assert out["shorter_won"]["rows"] == 2 and out["longer_won"]["rows"] == 1
    assert out["shorter_won"]["log_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.4)) / 2)
    assert out["shorter_won"]["accuracy"] == 0.5  # row 1 predicts A
    assert out["longer_won"]["log_loss"] == pytest.approx(-np.log(0.2)) and out["longer_won"]["accuracy"] == 0.0


def test_verdicts_name_the_likeliest_outcome_and_ambiguous_ties_between_a_and_b():
    probs = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.4, 0.4, 0.2],
                      [0.4, 0.4 - 5e-10, 0.2 + 5e-10], [0.4, 0.4 - 1e-6, 0.2 + 1e-6], [0.3, 0.3, 0.4 + 1e-12]])
    probs /= probs.sum(1, keepdims=True)
    assert verdicts(probs) == ["a_wins", "b_wins", "tie", "ambiguous", "ambiguous", "a_wins", "tie"]
    # P(A) = P(B) = P(tie): no outcome is likelier, and "A wins" (the argmax's first) would be a guess.
    assert verdicts(np.full((1, 3), 1 / 3)) == ["ambiguous"]
