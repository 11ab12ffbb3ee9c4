import numpy as np
from sklearn import metrics as sk

from arenapref.metrics import classification_metrics, expected_calibration_error, log_loss


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
