"""Temperature scaling: fitted on held-out logits, it must undo a known miscalibration and never hurt NLL."""

import numpy as np

from arenapref.evaluation.calibration import calibrate, fit_temperature
from arenapref.evaluation.metrics import expected_calibration_error, log_loss, softmax


def _synthetic(temperature_truth: float, n: int = 3000, seed: int = 0):
    """Labels drawn from softmax(z); the model reports z * temperature_truth (over-confident when > 1)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.0, size=(n, 3))
    labels = np.array([rng.choice(3, p=p) for p in softmax(z)])
    return z * temperature_truth, labels


def test_temperature_recovers_overconfidence_and_lowers_nll():
    logits, labels = _synthetic(3.0)
    t = fit_temperature(logits, labels)
    assert 2.6 < t < 3.4  # the true miscalibration factor is 3
    before, after = log_loss(labels, softmax(logits)), log_loss(labels, softmax(logits, t))
    assert after < before - 0.2
    assert expected_calibration_error(labels, softmax(logits, t)) < expected_calibration_error(labels, softmax(logits))


def test_temperature_fixes_underconfidence_too():
    logits, labels = _synthetic(0.4)
    t = fit_temperature(logits, labels)
    assert 0.3 < t < 0.5
    assert log_loss(labels, softmax(logits, t)) < log_loss(labels, softmax(logits))


def test_well_calibrated_model_keeps_temperature_near_one():
    logits, labels = _synthetic(1.0)
    assert abs(fit_temperature(logits, labels) - 1.0) < 0.15


def test_calibrate_logs_before_after_and_skips_tiny_sets():
    logits, labels = _synthetic(3.0, n=500)
    lines = []
    t, probs = calibrate(logits, labels, lines.append)
    assert t > 2 and "->" in lines[0] and "temperature" in lines[0]
    np.testing.assert_allclose(probs, softmax(logits, t))
    t_small, _ = calibrate(logits[:10], labels[:10], lines.append)
    assert t_small == 1.0 and "skipped" in lines[-1]
