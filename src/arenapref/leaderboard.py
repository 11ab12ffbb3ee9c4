"""Model leaderboards: Bradley-Terry ratings on the Elo scale with bootstrap intervals, as LMSYS / FastChat do.

Rating R on the Elo scale: P(a beats b) = 1 / (1 + 10^((R_b - R_a) / 400)); the mean rating (or a chosen anchor
model) is 1000. Each battle has an outcome as three weights (A wins, B wins, tie): one-hot for a human vote, or a
judge's predicted probabilities ("soft" outcomes: the ratings a model would get if the judge's votes were cast).
Ties: "half" counts a tie as half a win for each side (FastChat counts every battle twice and splits a tie's two
copies into one win each way: the same likelihood); "davidson" models ties explicitly (Davidson 1970: P(tie) grows
with nu * sqrt(pi_a pi_b)).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from .data import LABEL_COLUMNS, DataError, read_table, write_csv_atomic, write_text_atomic

SCALE, BASE, INITIAL = 400.0, 10.0, 1000.0
# A negligible ridge on the natural-log strengths (a Gaussian prior with sd 22, about 3900 Elo): the plain MLE on
# connected data, a finite rating for a model that never lost (where the MLE runs off to infinity), and a unique
# solution (the mean is fixed).
RIDGE = 1e-3
WINNER_NAMES = {"model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2}


# -- reading battles ---------------------------------------------------------------------------------------------
def load_battles(path) -> pd.DataFrame:
    """Battles file -> id, model_a, model_b and, if it has votes, an (N, 3) outcome in column `outcome`.

    Votes come from Kaggle's one-hot winner_model_a / winner_model_b / winner_tie columns, or from a FastChat-style
    `winner` column (model_a, model_b, tie, tie (bothbad)). Self-battles (model_a == model_b) carry no information
    and are dropped.
    """
    raw = read_table(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in ("model_a", "model_b") if c not in raw.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; a battles file names the two models of "
                        "each row (Kaggle train format)")
    out = pd.DataFrame({
        "id": raw["id"].astype(str).str.strip() if "id" in raw.columns else [str(i) for i in range(len(raw))],
        "model_a": raw["model_a"].astype(str).str.strip(),
        "model_b": raw["model_b"].astype(str).str.strip(),
    })
    for col in ("model_a", "model_b"):
        empty = out[col] == ""
        if empty.any():
            raise DataError(f"{path}: row {int(np.flatnonzero(empty)[0]) + 1} column {col}: empty model name")
    if all(c in raw.columns for c in LABEL_COLUMNS):
        out["outcome"] = list(_one_hot_votes(raw, path))
    elif "winner" in raw.columns:
        winner = raw["winner"].astype(str).str.strip()
        bad = ~winner.isin(list(WINNER_NAMES))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: row {i + 1} column winner: {winner.iloc[i]!r}; expected one of "
                            f"{', '.join(WINNER_NAMES)}")
        out["outcome"] = list(np.eye(3)[winner.map(WINNER_NAMES).to_numpy()])
    keep = out["model_a"] != out["model_b"]
    return out[keep].reset_index(drop=True)


def _one_hot_votes(raw: pd.DataFrame, path) -> np.ndarray:
    values = raw[list(LABEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    ok = np.isin(values, (0.0, 1.0)).all(axis=1) & (values.sum(axis=1) == 1)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}: row {i + 1} columns {','.join(LABEL_COLUMNS)}: {raw.loc[i, list(LABEL_COLUMNS)].tolist()} "
                        "is not one-hot; exactly one of the three must be 1")
    return values


def load_predictions(path, ids: pd.Series) -> np.ndarray:
    """A prediction CSV (id + the three probabilities, as `arenapref predict` writes) aligned to battle ids."""
    pred = read_table(path)
    pred.columns = [str(c).strip() for c in pred.columns]
    missing = [c for c in ("id", *LABEL_COLUMNS) if c not in pred.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected the output of `arenapref predict`")
    pred = pred.assign(id=pred["id"].astype(str).str.strip()).drop_duplicates("id").set_index("id")
    absent = ~ids.isin(pred.index)
    if absent.any():
        raise DataError(f"{path}: no prediction for battle id {ids[absent].iloc[0]!r} ({int(absent.sum())} missing); "
                        "predict on the same battles file")
    probs = pred.loc[ids, list(LABEL_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(probs).all(axis=1) | (probs < 0).any(axis=1) | (probs.sum(axis=1) <= 0)
    if bad.any():
        raise DataError(f"{path}: id {ids.iloc[int(np.flatnonzero(bad)[0])]!r}: probabilities must be numbers >= 0 "
                        "with a positive sum")
    return probs / probs.sum(axis=1, keepdims=True)


def drop_rare_models(battles: pd.DataFrame, min_battles: int) -> pd.DataFrame:
    """Battles between models that each have at least `min_battles` battles (a rating from 2 votes is noise)."""
    if min_battles <= 1:
        return battles
    counts = pd.concat([battles["model_a"], battles["model_b"]]).value_counts()
    keep = counts.index[counts >= min_battles]
    kept = battles[battles["model_a"].isin(keep) & battles["model_b"].isin(keep)]
    if kept.empty:
        raise DataError(f"no model has {min_battles} or more battles; lower --min-battles")
    return kept.reset_index(drop=True)


# -- fitting -----------------------------------------------------------------------------------------------------
def pair_weights(a: np.ndarray, b: np.ndarray, outcomes: np.ndarray, counts: np.ndarray | None = None):
    """Sum the outcome weights of battles between the same ordered pair: (pairs (P, 2), weights (P, 3))."""
    weights = outcomes * (1.0 if counts is None else counts[:, None])
    keys, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    summed = np.zeros((len(keys), 3))
    np.add.at(summed, inverse.ravel(), weights)
    return keys, summed


def fit_half_wins(pairs: np.ndarray, weights: np.ndarray, n_models: int) -> np.ndarray:
    """Elo-scale ratings (mean 0): Bradley-Terry MLE with a tie as half a win each way (L-BFGS).

    The same likelihood as FastChat's compute_mle_elo (a logistic regression on +-log(10) features, tie rows
    duplicated as one win each way); a direct fit is 10x faster than sklearn's, which matters for the bootstrap.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    win_a = weights[:, 0] + weights[:, 2] / 2
    win_b = weights[:, 1] + weights[:, 2] / 2

    def objective(theta):
        diff = theta[a] - theta[b]
        nll = (win_a * np.logaddexp(0, -diff) + win_b * np.logaddexp(0, diff)).sum() + RIDGE * (theta ** 2).sum()
        slope = win_b * expit(diff) - win_a * expit(-diff)  # d nll / d diff
        grad = np.bincount(a, slope, n_models) - np.bincount(b, slope, n_models) + 2 * RIDGE * theta
        return nll, grad

    result = minimize(objective, np.zeros(n_models), jac=True, method="L-BFGS-B",
                      options={"maxiter": 5000, "gtol": 1e-9})
    return result.x * SCALE / math.log(BASE)


def fit_davidson(pairs: np.ndarray, weights: np.ndarray, n_models: int) -> tuple[np.ndarray, float]:
    """Elo-scale ratings (mean 0) and the tie weight nu under the Davidson model, by maximum likelihood (L-BFGS).

    Outcome logits [theta_a, theta_b, log nu + (theta_a + theta_b) / 2], theta = R ln(10) / 400.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    total = weights.sum(axis=1)

    def objective(params):
        theta, log_nu = params[:-1], params[-1]
        z = np.stack([theta[a], theta[b], log_nu + (theta[a] + theta[b]) / 2], axis=1)
        z_max = z.max(axis=1, keepdims=True)
        log_norm = z_max[:, 0] + np.log(np.exp(z - z_max).sum(axis=1))
        prob = np.exp(z - log_norm[:, None])
        nll = -(weights * (z - log_norm[:, None])).sum() + RIDGE * (theta ** 2).sum()
        resid = weights - total[:, None] * prob  # d(log-likelihood)/dz
        grad = np.zeros_like(params)
        np.add.at(grad, a, -(resid[:, 0] + resid[:, 2] / 2))
        np.add.at(grad, b, -(resid[:, 1] + resid[:, 2] / 2))
        grad[:-1] += 2 * RIDGE * theta
        grad[-1] = -resid[:, 2].sum()
        return nll, grad

    result = minimize(objective, np.zeros(n_models + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 2000, "gtol": 1e-9})
    theta = result.x[:-1]
    return theta * SCALE / math.log(BASE), float(math.exp(result.x[-1]))


def fit_ratings(a, b, outcomes, n_models: int, ties: str = "half", counts=None) -> np.ndarray:
    """Ratings (mean 0 over models that played) for battles given as model indices a, b and (N, 3) outcomes."""
    pairs, weights = pair_weights(a, b, outcomes, counts)
    if ties == "half":
        ratings = fit_half_wins(pairs, weights, n_models)
    elif ties == "davidson":
        ratings = fit_davidson(pairs, weights, n_models)[0]
    else:
        raise DataError(f"ties {ties!r}: expected half or davidson")
    played = np.zeros(n_models, dtype=bool)
    played[pairs[weights.sum(axis=1) > 0].ravel()] = True
    ratings = np.where(played, ratings, np.nan)
    return ratings - np.nanmean(ratings)


def anchored(ratings: np.ndarray, anchor_index: int | None) -> np.ndarray:
    """Shift so that the anchor model (or, without one, the mean model) sits at 1000."""
    shift = -ratings[anchor_index] if anchor_index is not None else -np.nanmean(ratings)
    return ratings + shift + INITIAL


def leaderboard(battles: pd.DataFrame, outcomes: np.ndarray, bootstrap: int = 100, ties: str = "half",
                anchor: str | None = None, seed: int = 0) -> pd.DataFrame:
    """model, rating, ci_low, ci_high, battles: point ratings from all battles, 95% intervals from `bootstrap`
    resamples of the battles (with replacement, FastChat's procedure), sorted best first."""
    models = np.array(sorted(set(battles["model_a"]) | set(battles["model_b"])))
    if len(models) < 2:
        raise DataError("the battles involve fewer than two distinct models; a leaderboard needs at least two")
    index = {m: i for i, m in enumerate(models)}
    if anchor is not None and anchor not in index:
        raise DataError(f"anchor model {anchor!r} is not in the battles; pick one of: {', '.join(models[:10])}")
    anchor_index = index[anchor] if anchor is not None else None
    a = battles["model_a"].map(index).to_numpy()
    b = battles["model_b"].map(index).to_numpy()
    outcomes = np.asarray(outcomes, dtype=float)
    from threadpoolctl import threadpool_limits

    # Many small fits: BLAS threads only add synchronisation (6x slower on a busy 2-core machine).
    with threadpool_limits(1):
        point = anchored(fit_ratings(a, b, outcomes, len(models), ties), anchor_index)
        rng = np.random.default_rng(seed)
        samples = np.full((bootstrap, len(models)), np.nan)
        for k in range(bootstrap):
            counts = np.bincount(rng.integers(0, len(a), len(a)), minlength=len(a)).astype(float)
            used = counts > 0
            samples[k] = anchored(fit_ratings(a[used], b[used], outcomes[used], len(models), ties, counts[used]),
                                  anchor_index)
    if bootstrap > 0:
        # A model missing from a resample (or a resample missing the anchor) has no rating there: skip it.
        with np.errstate(all="ignore"):
            low, high = np.nanpercentile(samples, [2.5, 97.5], axis=0)
    else:
        low = high = np.full(len(models), np.nan)
    n_battles = np.bincount(np.r_[a, b], minlength=len(models))
    table = pd.DataFrame({"model": models, "rating": point, "ci_low": low, "ci_high": high, "battles": n_battles})
    return table.sort_values("rating", ascending=False, kind="stable").reset_index(drop=True)


def rank_correlation(human: pd.DataFrame, predicted: pd.DataFrame) -> dict:
    """Spearman and Kendall rank correlations between two leaderboards over their common models."""
    from scipy.stats import kendalltau, spearmanr

    merged = human.merge(predicted, on="model", suffixes=("_human", "_predicted"))
    if len(merged) < 2:
        return {"models": len(merged), "spearman": float("nan"), "kendall": float("nan")}
    return {"models": int(len(merged)),
            "spearman": float(spearmanr(merged["rating_human"], merged["rating_predicted"]).statistic),
            "kendall": float(kendalltau(merged["rating_human"], merged["rating_predicted"]).statistic)}


# -- chart -------------------------------------------------------------------------------------------------------
def plot_leaderboard(tables: dict[str, pd.DataFrame], path, title: str = "Bradley-Terry ratings (Elo scale)") -> None:
    """Ratings with 95% intervals, one row per model (ordered by the first table), one marker per table."""
    from .figures import plt, save_figure

    first = next(iter(tables.values()))
    order = first["model"].tolist()[::-1]
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * len(order)))
    offsets = np.linspace(-0.15, 0.15, len(tables)) if len(tables) > 1 else [0.0]
    for offset, (label, table) in zip(offsets, tables.items()):
        table = table.set_index("model").reindex(order)
        y = np.arange(len(order)) + offset
        err = np.vstack([table["rating"] - table["ci_low"], table["ci_high"] - table["rating"]])
        name = {"votes": "human votes", "judge": "judge's predicted votes"}.get(label, label)
        ax.errorbar(table["rating"], y, xerr=np.nan_to_num(np.abs(err)), fmt="o", ms=4, capsize=2, label=name)
    ax.set_yticks(np.arange(len(order)), order, fontsize=8)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.axvline(INITIAL, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("rating (95% bootstrap interval)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def write_leaderboards(battles: pd.DataFrame, outcomes: dict[str, np.ndarray], output: Path | None,
                       bootstrap: int = 100, ties: str = "half", anchor: str | None = None, seed: int = 0):
    """One leaderboard per source of outcomes ("votes": human, "judge": predicted), their rank correlation, and files:
    leaderboard.csv (human votes, or the judge's when there are no votes), leaderboard_judge.csv when both,
    leaderboard.png and leaderboard.json (settings and correlations)."""
    boards = {name: leaderboard(battles, values, bootstrap, ties, anchor, seed) for name, values in outcomes.items()}
    summary = {"battles": int(len(battles)), "models": int(len(next(iter(boards.values())))), "ties": ties,
               "bootstrap": bootstrap, "anchor": anchor, "sources": list(boards)}
    if len(boards) == 2:
        summary.update(rank_correlation(boards["votes"], boards["judge"]))
    if output is None:
        return boards, summary
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (name, board) in enumerate(boards.items()):
        filename = "leaderboard.csv" if i == 0 else "leaderboard_judge.csv"
        write_csv_atomic(board, output / filename, float_format="%.1f")
        files.append(filename)
    plot_leaderboard(boards, output / "leaderboard.png")
    files += ["leaderboard.png", "leaderboard.json"]
    summary["files"] = files
    write_text_atomic(json.dumps(summary, indent=2), output / "leaderboard.json")
    return boards, summary
