"""Metrics for 3-way preference probabilities (label order: A wins, B wins, tie)."""

from __future__ import annotations

import numpy as np
from scipy import special

CLASS_NAMES = ("model_a", "model_b", "tie")
EPS = 1e-15
# What a prediction says, in words: the likeliest outcome, or "ambiguous" where A and B are equally likely (within
# AMBIGUOUS_TOL) and no less likely than a tie, which every argmax would report as "A wins".
VERDICTS = ("a_wins", "b_wins", "tie", "ambiguous")
AMBIGUOUS_TOL = 1e-9


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of (N, 3) logits in float64."""
    return special.softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Predictive entropy in nats: log 3 for a uniform row, 0 for a certain one."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (top probability - second probability): 1 when the two likeliest outcomes are level."""
    top = -np.sort(-np.asarray(probs, dtype=np.float64), axis=1)
    return 1.0 - (top[:, 0] - top[:, 1])


UNCERTAINTY = {"entropy": entropy, "margin": margin}


def least_certain(probs: np.ndarray, fraction: float, by: str = "entropy") -> np.ndarray:
    """Indices (ascending) of the ceil(fraction * N) rows whose `by` uncertainty (entropy or margin) is highest;
    ties go to the earlier row, so the choice is a function of the rows alone."""
    n = len(probs)
    k = min(n, int(np.ceil(fraction * n - 1e-9)))
    if k >= n:
        return np.arange(n)
    order = np.argsort(-UNCERTAINTY[by](probs), kind="stable")
    return np.sort(order[:k])


def verdicts(probs: np.ndarray, tol: float = AMBIGUOUS_TOL) -> list[str]:
    """One of VERDICTS per row of (N, 3) probabilities in label order (A wins, B wins, tie)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, 3)
    ambiguous = (np.abs(probs[:, 0] - probs[:, 1]) <= tol) & (np.minimum(probs[:, 0], probs[:, 1]) >= probs[:, 2] - tol)
    return ["ambiguous" if a else VERDICTS[int(k)] for a, k in zip(ambiguous, probs.argmax(axis=1))]


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood; rows are renormalised and clipped like Kaggle's scorer."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1 - EPS)
    probs = probs / probs.sum(axis=1, keepdims=True)
    labels = np.asarray(labels)
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def confusion(labels: np.ndarray, preds: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(preds)), 1)
    return matrix


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins."""
    probs = np.asarray(probs)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Everything `evaluate` reports, as plain Python values (JSON-serialisable)."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    preds = probs.argmax(axis=1)
    matrix = confusion(labels, preds)
    true_pos = np.diag(matrix).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.nan_to_num(true_pos / matrix.sum(axis=0))
        recall = np.nan_to_num(true_pos / matrix.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    prior = np.bincount(labels, minlength=3) / len(labels)
    out = {
        "n": int(len(labels)),
        "log_loss": log_loss(labels, probs),
        "prior_log_loss": log_loss(labels, np.tile(prior, (len(labels), 1))),
        "accuracy": float((preds == labels).mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "ece": expected_calibration_error(labels, probs),
        "confusion": matrix.tolist(),
    }
    for j, name in enumerate(CLASS_NAMES):
        out[f"precision_{name}"] = float(precision[j])
        out[f"recall_{name}"] = float(recall[j])
        out[f"f1_{name}"] = float(f1[j])
    return out


def length_slices(labels: np.ndarray, probs: np.ndarray, length_a: np.ndarray, length_b: np.ndarray) -> dict:
    """Log loss and accuracy on the decisive rows where the shorter response won, and where the longer one did.

    Arena voters favour longer answers, so a model can score well overall by reading length alone; on the
    "shorter won" rows such a model does worse than a coin. Lengths are in characters; equal lengths count in
    neither slice.
    """
    labels, probs = np.asarray(labels), np.asarray(probs)
    a_shorter, b_shorter = np.asarray(length_a) < np.asarray(length_b), np.asarray(length_b) < np.asarray(length_a)
    shorter_won = ((labels == 0) & a_shorter) | ((labels == 1) & b_shorter)
    longer_won = ((labels == 0) & b_shorter) | ((labels == 1) & a_shorter)
    out = {}
    for name, rows in (("shorter_won", shorter_won), ("longer_won", longer_won)):
        n = int(rows.sum())
        out[name] = {"rows": n,
                     "log_loss": log_loss(labels[rows], probs[rows]) if n else None,
                     "accuracy": float((probs[rows].argmax(1) == labels[rows]).mean()) if n else None}
    return out


def frame_length_slices(frame, probs: np.ndarray) -> dict:
    """`length_slices` of a normalised frame (turn lists joined as the features do)."""
    return length_slices(frame["label"].to_numpy(), probs, *response_lengths(frame))


def response_lengths(frame) -> tuple[np.ndarray, np.ndarray]:
    """Characters of each side's response turns (joined as the features do), per row of a normalised frame."""
    length = lambda column: np.array([len("\n".join(turns)) for turns in frame[column]], dtype=np.int64)
    return length("response_a"), length("response_b")


def _pairwise_part(correct: np.ndarray, longer: np.ndarray) -> dict:
    n = int(len(correct))
    return {"rows": n, "accuracy": float(correct.mean()) if n else None,
            "longer_wins": float(longer.mean()) if n else None}


def pairwise_accuracy(labels: np.ndarray, probs: np.ndarray, scores: np.ndarray | None, length_a: np.ndarray,
                      length_b: np.ndarray, subsets=None) -> dict:
    """RewardBench-style accuracy on the rows with a chosen side (A won or B won; ties are left out): a row counts
    when the chosen response is scored strictly above the rejected one (equal scores count as wrong, as in
    RewardBench). `scores` (N, 2) are per-response scores (rank models); without them P(chosen wins) >
    P(rejected wins) decides (`by` says which). `longer_wins` is the "longer answer wins" baseline on the same rows
    (lengths in characters; equal lengths count as wrong). Per `subset` value too when `subsets` is given."""
    labels = np.asarray(labels)
    decisive = (labels == 0) | (labels == 1)
    values = np.asarray(scores if scores is not None else np.asarray(probs)[:, :2], dtype=np.float64)
    chosen = np.clip(labels, 0, 1)
    rows = np.arange(len(labels))
    correct = values[rows, chosen] > values[rows, 1 - chosen]
    lengths = np.stack([np.asarray(length_a), np.asarray(length_b)], axis=1)
    longer = lengths[rows, chosen] > lengths[rows, 1 - chosen]
    out = {"by": "score" if scores is not None else "probability",
           **_pairwise_part(correct[decisive], longer[decisive])}
    if subsets is not None:
        subsets = np.asarray(subsets).astype(str)
        out["subsets"] = {name: _pairwise_part(correct[decisive & (subsets == name)],
                                               longer[decisive & (subsets == name)])
                          for name in sorted(set(subsets[decisive]))}
    return out


def frame_pairwise_accuracy(frame, probs: np.ndarray, scores: np.ndarray | None = None) -> dict:
    """`pairwise_accuracy` of a normalised frame (per `subset` when the frame has that column)."""
    length_a, length_b = response_lengths(frame)
    subsets = frame["subset"].to_numpy() if "subset" in frame.columns else None
    return pairwise_accuracy(frame["label"].to_numpy(), probs, scores, length_a, length_b, subsets)


def order_disagreement(direct: np.ndarray, mirrored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of two (N, 3) answers, the one for the rows as given and the one with A and B exchanged mapped back
    to A/B order: |difference| per class (N, 3), and whether the top label differs (N,) bool."""
    direct, mirrored = np.asarray(direct, np.float64), np.asarray(mirrored, np.float64)
    return np.abs(direct - mirrored), direct.argmax(axis=1) != mirrored.argmax(axis=1)


def position_consistency(direct: np.ndarray, mirrored: np.ndarray) -> dict:
    """How much an answer depends on which response is shown first: `flip_rate`, the share of rows whose top label
    changes when A and B are exchanged; `mean_abs_diff`, the mean |P(A wins) - P(B wins, swapped)| (the same
    response's chance of winning from either position); `per_class`, the mean |difference| of each class.
    0 everywhere for a symmetric model (e.g. one averaging both orders)."""
    diff, flips = order_disagreement(direct, mirrored)
    n = int(len(diff))
    return {"rows": n, "flip_rate": float(flips.mean()) if n else None,
            "mean_abs_diff": float(diff[:, 0].mean()) if n else None,
            "per_class": {name: float(diff[:, j].mean()) if n else None for j, name in enumerate(CLASS_NAMES)}}


def diagnostics_summary(rows: list[dict]) -> dict:
    """Counts over per-row diagnostics (`predict --diagnostics`): rows cut to fit the model (`truncated`), rows
    with earlier rounds (joint families) or turns (dual tower) left out (`dropped`), each warning, and (swap TTA)
    rows whose top label flips with the order."""
    warnings: dict[str, int] = {}
    for row in rows:
        for name in row.get("warnings", ()):
            warnings[name] = warnings.get(name, 0) + 1
    dropped = lambda r: bool(r.get("rounds_dropped")) or any((r.get("turns_dropped") or {}).values())
    out = {"rows": len(rows), "truncated": sum(bool(r.get("truncated")) for r in rows),
           "dropped": sum(dropped(r) for r in rows), "warnings": warnings}
    if rows and all("swap" in r for r in rows):
        out["top_label_flips"] = sum(bool(r["swap"]["top_label_flips"]) for r in rows)
    return out
