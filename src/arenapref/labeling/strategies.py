"""Which unlabelled battles are worth a human's time, and which a judge can label alone.

Everything here is a pure function over arrays, so each strategy can be checked on constructed cases:
  probabilities (N, 3)                      entropy, margin, and the auto-label rule
  probabilities both ways round (N, 3) x 2  swap-disagreement
  committee probabilities (M, N, 3)         committee
  a feature matrix (N, F)                   the diversity-aware batch (`diverse=True`)
`score_pool` is the one place that asks a model (a Judge, or anything with the same methods) for those arrays;
`arenapref select` / `auto-label` and bench/active.py call it. A higher score means a human label is expected to
help more; ties in score keep the pool's order (stable sort), so the same inputs and seed give the same picks.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.features import feature_blocks, feature_matrix
from arenapref.data.tables import read_table, to_kaggle
from arenapref.errors import DataError
from arenapref.evaluation.calibration import MIN_ROWS
from arenapref.evaluation.metrics import entropy, margin  # noqa: F401 (their old import path)
from arenapref.models import META_FILE
from arenapref.models.directory import check_model_dir

STRATEGIES = ("random", "entropy", "margin", "swap-disagreement", "committee")
EPS = 1e-12
# The diversity-aware batch clusters the PREFILTER x count most informative rows into `count` clusters.
PREFILTER = 5


def check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise DataError(f"--strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    return strategy


# -- scores ------------------------------------------------------------------------------------------------------
def swap_disagreement(probs: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Total variation between the answer for (A, B) and the answer for (B, A) mapped back to A/B order.

    0 when the model says the same thing both ways round, 1 when its two answers share nothing."""
    return 0.5 * np.abs(np.asarray(probs, dtype=np.float64) - np.asarray(swapped, dtype=np.float64)).sum(axis=1)


def committee_disagreement(members: np.ndarray) -> np.ndarray:
    """Mean KL divergence of each member from the committee's mean (the generalised Jensen-Shannon divergence,
    = entropy of the mean - mean entropy of the members): 0 when every member agrees."""
    members = np.clip(np.asarray(members, dtype=np.float64), EPS, 1.0)
    if members.ndim != 3 or members.shape[0] < 2:
        raise DataError(f"a committee needs at least 2 members' probabilities, got an array of shape {members.shape}")
    mean = members.mean(axis=0)
    return np.maximum(entropy(mean) - np.mean([entropy(m) for m in members], axis=0), 0.0)


def random_scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random(n)


def strategy_scores(strategy: str, probs: np.ndarray, swapped: np.ndarray | None = None,
                    members: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """The score each row gets under `strategy` (higher: a label helps more)."""
    check_strategy(strategy)
    if strategy == "random":
        return random_scores(len(probs), seed)
    if strategy == "entropy":
        return entropy(probs)
    if strategy == "margin":
        return margin(probs)
    if strategy == "swap-disagreement":
        if swapped is None:
            raise DataError("swap-disagreement needs the model's answers with A and B exchanged")
        return swap_disagreement(probs, swapped)
    if members is None:
        raise DataError("committee needs the probabilities of several models")
    return committee_disagreement(members)


# -- choosing a batch ---------------------------------------------------------------------------------------------
def top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` highest scores, best first; equal scores keep their order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:max(count, 0)]


def diversity_space(features: np.ndarray) -> np.ndarray:
    """Features on a common scale for distances: sign(x) log(1 + |x|) (lengths span orders of magnitude), then
    z-scores over these rows, clipped at 5 (a constant column becomes 0)."""
    x = np.asarray(features, dtype=np.float64)
    x = np.sign(x) * np.log1p(np.abs(x))
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    return np.clip(z, -5.0, 5.0)


def diverse_top(scores: np.ndarray, space: np.ndarray, count: int, seed: int = 0,
                prefilter: int = PREFILTER) -> np.ndarray:
    """A batch of `count` informative rows that are not near-duplicates of each other (Zhdanov 2019, "Diverse
    mini-batch active learning"): the `prefilter x count` best-scoring rows are clustered into `count` clusters by
    k-means in `space`, and each cluster gives its best-scoring row. Rows with identical features always share a
    cluster, so at most one of them is picked (unless fewer distinct rows than `count` remain). Best first."""
    scores = np.asarray(scores, dtype=np.float64)
    count = min(count, len(scores))
    candidates = top(scores, min(len(scores), max(count, prefilter * count)))
    if count <= 0:
        return candidates[:0]
    if count == len(candidates) or count == 1:
        return candidates[:count]
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct rows than clusters: handled below
        clusters = KMeans(n_clusters=count, n_init=3, random_state=seed).fit_predict(space[candidates])
    picks, seen = [], set()
    for row, cluster in zip(candidates, clusters):  # candidates are best first: the first of a cluster is its best
        if cluster not in seen:
            seen.add(cluster)
            picks.append(row)
    if len(picks) < count:  # empty clusters: fill with the best remaining rows, distinct feature vectors first
        taken = {space[i].tobytes() for i in picks}
        rest = [i for i in candidates if i not in set(picks)]
        fresh = [i for i in rest if space[i].tobytes() not in taken]
        picks += (fresh + [i for i in rest if i not in set(fresh)])[:count - len(picks)]
    picks = np.asarray(picks)
    return picks[np.argsort(-scores[picks], kind="stable")]


def choose(scores: np.ndarray, count: int, features: np.ndarray | None = None, diverse: bool = False,
           seed: int = 0) -> np.ndarray:
    """Indices of the batch to label, best first: the top scores, or a diverse batch over `features`."""
    if not diverse:
        return top(scores, count)
    if features is None:
        raise DataError("a diverse batch needs a feature matrix of the pool")
    return diverse_top(scores, diversity_space(features), count, seed)


# -- the other side: rows a judge may label alone -----------------------------------------------------------------
def confident_rows(probs: np.ndarray, max_error: float) -> tuple[np.ndarray, float, float]:
    """The largest set of rows whose expected error, the mean of 1 - max probability over the set, is at most
    `max_error`: the most confident rows first, so the set is a prefix of the rows sorted by confidence.
    Returns (indices, most confident first; the set's expected error; the lowest confidence in it)."""
    if not 0.0 < max_error < 1.0:
        raise DataError(f"--max-error {max_error}: must be between 0 and 1 (e.g. 0.1 for 10% expected errors)")
    confidence = np.asarray(probs, dtype=np.float64).max(axis=1)
    order = np.argsort(-confidence, kind="stable")
    errors = 1.0 - confidence[order]
    running = np.cumsum(errors) / np.arange(1, len(errors) + 1)  # non-decreasing: errors are sorted ascending
    k = int(np.searchsorted(running, max_error + 1e-12, side="right"))
    if k == 0:
        return order[:0], float("nan"), float("nan")
    return order[:k], float(running[k - 1]), float(confidence[order[k - 1]])


# -- asking a model -----------------------------------------------------------------------------------------------
def needs(strategy: str, diverse: bool = False) -> set:
    """What `score_pool` must compute for a strategy: subset of {"swapped", "members", "features"}."""
    out = set()
    if strategy == "swap-disagreement":
        out.add("swapped")
    if strategy == "committee":
        out.add("members")
    if diverse:
        out.add("features")
    return out


def pool_features(frame) -> np.ndarray:
    """The gbdt's hand-made feature matrix of a normalised frame (the diversity space of every model family)."""
    return feature_matrix(feature_blocks(frame))


def score_pool(model, frame, strategy: str, count: int, committee: list | None = None, diverse: bool = False,
               seed: int = 0, features: np.ndarray | None = None) -> dict:
    """Rank the rows of a normalised frame for labelling. `model` has `predict_proba(frame)` and, for
    swap-disagreement, `predict_both_orders(frame)` -> (answer as given, answer with A and B exchanged mapped
    back, the model's usual answer) (a Judge has both); `committee` is a list of models with `predict_proba`.
    Returns {"picks": indices best first, "scores": every row's score, "probs": the model's probabilities}."""
    check_strategy(strategy)
    want = needs(strategy, diverse)
    direct = swapped = None
    if "swapped" in want:
        direct, swapped, probs = model.predict_both_orders(frame)
    else:
        probs = model.predict_proba(frame)
    members = None
    if "members" in want:
        if not committee or len(committee) < 2:
            raise DataError("--strategy committee needs at least 2 committee models")
        members = np.stack([m.predict_proba(frame) for m in committee])
    # swap-disagreement compares the two one-sided answers; `probs` is what the model returns (for the gbdt, which
    # averages both orders, the two differ).
    scores = strategy_scores(strategy, direct if direct is not None else probs, swapped=swapped, members=members,
                             seed=seed)
    if "features" in want and features is None:
        features = pool_features(frame)
    picks = choose(scores, count, features=features, diverse=diverse, seed=seed)
    return {"picks": picks, "scores": scores, "probs": probs}


# -- files: what the commands read and write ----------------------------------------------------------------------
PROB_COLUMNS = ("prob_model_a", "prob_model_b", "prob_tie")


def read_ids(path) -> set:
    """The ids of a file (any CSV / JSONL / Parquet with an `id` column: a labelled file, an earlier picks file)."""
    table = read_table(path)
    if "id" not in [str(c).strip() for c in table.columns]:
        raise DataError(f"{path}: no id column; --exclude takes files with an id column (e.g. an earlier picks "
                        "file or the labelled data)")
    table.columns = [str(c).strip() for c in table.columns]
    return set(table["id"].astype(str).str.strip())


def drop_excluded(frame, paths) -> tuple:
    """The pool without the ids of the --exclude files; returns (rows left, how many were dropped)."""
    if not paths:
        return frame, 0
    ids = set().union(*(read_ids(p) for p in paths))
    keep = ~frame["id"].isin(ids)
    return frame[keep].reset_index(drop=True), int((~keep).sum())


def committee_dirs(paths) -> list:
    """Model directories of a committee: each path is a model directory, or an `arenapref cv --keep-models`
    output holding fold-*/model."""
    dirs = []
    for path in map(Path, paths):
        if (path / META_FILE).is_file():
            found = [path]
        else:
            found = sorted(p for p in path.glob("fold-*/model") if (p / META_FILE).is_file()) if path.is_dir() else []
            if not found:
                if path.is_dir() and (path / "cv_metrics.json").is_file():
                    raise DataError(f"{path}: a cv output without fold models; rerun `arenapref cv` with "
                                    "--keep-models, or pass model directories")
                check_model_dir(path)  # says what is wrong with it (missing, empty, unfinished, ...)
        for d in found:
            check_model_dir(d)
        dirs += found
    if len(dirs) < 2:
        raise DataError(f"--committee: found {len(dirs)} model, a committee needs at least 2 (e.g. the fold models "
                        "of `arenapref cv --keep-models`)")
    return dirs


def picks_frame(frame, result: dict, strategy: str):
    """rank, id, strategy, score, prob_model_a, prob_model_b, prob_tie of the chosen rows, best first."""
    picks = result["picks"]
    out = pd.DataFrame({"rank": np.arange(1, len(picks) + 1), "id": frame["id"].to_numpy()[picks],
                        "strategy": strategy, "score": result["scores"][picks]})
    for j, name in enumerate(PROB_COLUMNS):
        out[name] = result["probs"][picks, j]
    return out


def auto_label_frame(frame, probs: np.ndarray, rows: np.ndarray):
    """The chosen rows in the Kaggle layout with the predicted winner as one-hot labels, plus the probabilities
    and the confidence (max probability): a file `arenapref train` reads like human-labelled data."""
    chosen = frame.iloc[rows].reset_index(drop=True).assign(label=probs[rows].argmax(axis=1))
    out = to_kaggle(chosen)
    for j, name in enumerate(PROB_COLUMNS):
        out[name] = probs[rows, j]
    out["confidence"] = probs[rows].max(axis=1)
    return out


def error_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """On labelled rows: those at or above a confidence threshold, their expected and their realised error."""
    confidence = probs.max(axis=1)
    rows = confidence >= threshold
    n = int(rows.sum())
    return {"rows": n, "of": int(len(labels)),
            "expected_error": float((1 - confidence[rows]).mean()) if n else None,
            "realised_error": float((probs[rows].argmax(1) != labels[rows]).mean()) if n else None}


def calibration_summary(meta: dict) -> dict:
    """What the expected error rests on: the model's stored calibration and its validation ECE."""
    cal = meta.get("calibration", {}) or {}
    ece = (meta.get("valid_metrics") or {}).get("ece")
    if meta.get("model_type") == "hybrid":
        text = (f"a blend of parts each calibrated on the same {meta.get('valid_rows', '?')} validation rows"
                + (f"; blend's validation ECE {ece:.4f}" if ece is not None else ""))
        return {"kind": "hybrid parts", "rows": meta.get("valid_rows"), "valid_ece": ece, "text": text}
    if (cal.get("rows") or 0) >= MIN_ROWS:  # below it training skipped the fit and stored T = 1
        text = (f"temperature {float(cal.get('temperature', 1.0)):.3f} fitted on {cal['rows']} validation rows"
                + (f"; validation ECE {ece:.4f}" if ece is not None else ""))
        return {"kind": "temperature", "temperature": float(cal.get("temperature", 1.0)), "rows": cal["rows"],
                "valid_ece": ece, "text": text}
    return {"kind": "none", "valid_ece": ece,
            "text": "no calibration stored (fewer than 50 validation rows): the expected error is the model's raw "
                    "confidence; measure it with --check LABELLED.csv"}
