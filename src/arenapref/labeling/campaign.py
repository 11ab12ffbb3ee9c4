"""A simulated annotation campaign: start from a few labelled battles, then repeat "train, choose a batch, reveal
its labels", and score every round on a fixed held-out part. bench/active.py runs it for every strategy.

Leakage is impossible by construction: the pool the learner and the strategy see has its labels stripped
(`strip_labels`), and labels come only from an `Oracle`, which holds them privately and answers only for the ids
it is asked about (it records every question, so a test can check what was revealed). The held-out labels go to
the scorer alone.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from arenapref.config import TrainConfig
from arenapref.data.features import feature_blocks
from arenapref.data.split import grouped_split, prompt_groups
from arenapref.data.tables import LABELS
from arenapref.errors import DataError
from arenapref.evaluation.calibration import MIN_ROWS, calibrate, fit_temperature
from arenapref.evaluation.metrics import log_loss, softmax
from arenapref.labeling.strategies import check_strategy, choose, strategy_scores
from arenapref.models.gbdt import boosters_proba, fit_boosters, one_sided_proba


def strip_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows without anything that tells their outcome: no label, no winner columns."""
    out = frame.drop(columns=[c for c in ("label", "winner", *LABELS) if c in frame.columns])
    return out.assign(label=-1).reset_index(drop=True)


class Oracle:
    """The annotators: holds the hidden labels of a pool and reveals one only for an id it is asked about."""

    def __init__(self, ids, labels):
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            raise DataError("oracle: ids must be unique")
        self.__labels = dict(zip(ids, (int(y) for y in labels)))  # name-mangled: not read by accident
        self.asked: list[str] = []

    def reveal(self, ids) -> np.ndarray:
        """Labels of these ids, in order; each id may be asked once (a second ask is a bug in the loop)."""
        ids = [str(i) for i in ids]
        unknown = [i for i in ids if i not in self.__labels]
        if unknown:
            raise DataError(f"oracle: no battle with id {unknown[0]!r} in the pool")
        again = set(ids) & set(self.asked) or (len(set(ids)) != len(ids))
        if again:
            raise DataError("oracle: an id was asked for twice")
        self.asked.extend(ids)
        return np.array([self.__labels[i] for i in ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.__labels)


# -- the learner: the gbdt family on cached features -----------------------------------------------------------------
class GBDTLearner:
    """Fits the gbdt family (features.py + LightGBM with the `arenapref train --model gbdt` settings) on labelled
    rows, with the features of each battle computed once and cached by id (they depend on the text only).

    calibration "oof" (default): K prompt-grouped folds of the labelled rows, one booster per fold trained on the
    other K-1 (as `arenapref cv` fold models are); the temperature is fitted on their out-of-fold predictions, so
    every round is calibrated, even on 50 labels; the final booster is fitted on every labelled row. The fold
    boosters are also the committee (`committee_proba`). calibration "train": exactly as `train_gbdt` (a grouped
    validation part of --valid-fraction for the temperature, then a refit on every row; below 50 validation rows,
    i.e. 334 labels, no temperature at all); the committee is then trained on demand the same way as for "oof".
    """

    def __init__(self, cfg=None, committee: int = 4, calibration: str = "oof"):
        if calibration not in ("oof", "train"):
            raise DataError(f"calibration {calibration!r}: expected oof or train")
        self.cfg = cfg or TrainConfig(data="-", output="-", model="gbdt")
        self.committee, self.calibration = committee, calibration
        self._cache: dict[str, dict] = {}

    def features(self, frame: pd.DataFrame) -> dict:
        missing = [i for i, key in enumerate(frame["id"]) if key not in self._cache]
        if missing:
            blocks = feature_blocks(frame.iloc[missing])
            for j, i in enumerate(missing):
                self._cache[frame["id"].iloc[i]] = {k: v[j] for k, v in blocks.items()}
        rows = [self._cache[key] for key in frame["id"]]
        return {k: np.array([r[k] for r in rows]).reshape(len(rows), -1)
                for k in ("side_a", "side_b", "pair", "prompt")}

    def fold_models(self, frame: pd.DataFrame, labels: np.ndarray, seed: int) -> tuple[list, np.ndarray]:
        """K boosters, each trained on K-1 prompt-grouped folds, and their out-of-fold probabilities (N, 3)."""
        from sklearn.model_selection import GroupKFold

        groups = prompt_groups(frame)
        k = self.committee
        if len(np.unique(groups)) < k:
            raise DataError(f"campaign: {len(np.unique(groups))} distinct prompts, too few for {k} folds")
        blocks = self.features(frame)
        members, oof = [], np.zeros((len(frame), 3))
        for m, (tr, te) in enumerate(GroupKFold(n_splits=k).split(frame, groups=groups)):
            cfg = dataclasses.replace(self.cfg, seed=seed + m)
            members.append(fit_boosters(cfg, _rows(blocks, tr), labels[tr], np.zeros(len(tr), bool)))
            oof[te] = boosters_proba(members[-1], _rows(blocks, te))
        return members, oof

    def fit(self, frame: pd.DataFrame, labels: np.ndarray, seed: int = 0) -> GBDTPredictor:
        cfg = dataclasses.replace(self.cfg, seed=seed)
        frame = frame.reset_index(drop=True)
        labels = np.asarray(labels)
        blocks = self.features(frame)
        temperature, members = 1.0, None
        if self.calibration == "oof":
            members, oof = self.fold_models(frame, labels, seed)
            temperature = fit_temperature(np.log(np.clip(oof, 1e-12, 1.0)), labels)
        elif round(len(frame) * cfg.valid_fraction) >= MIN_ROWS:
            train_part, valid_part = grouped_split(frame.assign(_row=np.arange(len(frame))), cfg.valid_fraction, seed)
            tr, va = train_part["_row"].to_numpy(), valid_part["_row"].to_numpy()
            if len(va) >= MIN_ROWS:
                first = fit_boosters(cfg, _rows(blocks, tr), labels[tr], np.zeros(len(tr), bool))
                temperature, _ = calibrate(np.log(boosters_proba(first, _rows(blocks, va))), labels[va],
                                           log=lambda *_: None)
        boosters = fit_boosters(cfg, blocks, labels, np.zeros(len(labels), bool))
        return GBDTPredictor(self, boosters, temperature, frame, labels, seed, members)


def _rows(blocks: dict, index: np.ndarray) -> dict:
    return {k: v[index] for k, v in blocks.items()}


class GBDTPredictor:
    """What one round's model answers: probabilities, both one-sided answers, the committee's probabilities."""

    def __init__(self, learner: GBDTLearner, boosters: dict, temperature: float, frame, labels, seed: int,
                 members: list | None = None):
        self.learner, self.boosters, self.temperature = learner, boosters, temperature
        self._frame, self._labels, self._seed, self._members = frame, labels, seed, members

    def _temper(self, probs: np.ndarray) -> np.ndarray:
        return softmax(np.log(np.clip(probs, 1e-12, 1.0)) / self.temperature)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self._temper(boosters_proba(self.boosters, self.learner.features(frame)))

    def predict_both_orders(self, frame: pd.DataFrame):
        direct, mirrored = one_sided_proba(self.boosters, self.learner.features(frame))
        return self._temper(direct), self._temper(mirrored), self.predict_proba(frame)

    def committee_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """(K, N, 3): the fold boosters' probabilities, each trained on K-1 of K prompt-grouped folds."""
        if self._members is None:
            self._members, _ = self.learner.fold_models(self._frame, self._labels, self._seed)
        blocks = self.learner.features(frame)
        return np.stack([self._temper(boosters_proba(b, blocks)) for b in self._members])


# -- the loop -----------------------------------------------------------------------------------------------------
def pick_batch(predictor, frame: pd.DataFrame, strategy: str, count: int, diverse: bool, seed: int,
               features: np.ndarray | None = None) -> np.ndarray:
    """Indices of `frame` (unlabelled rows) to label next under `strategy`."""
    check_strategy(strategy)
    direct = swapped = members = None
    if strategy == "swap-disagreement":
        direct, swapped, probs = predictor.predict_both_orders(frame)
    elif strategy != "random" or diverse:
        probs = predictor.predict_proba(frame)
    else:
        probs = np.zeros((len(frame), 3))
    if strategy == "committee":
        members = predictor.committee_proba(frame)
    scores = strategy_scores(strategy, direct if direct is not None else probs, swapped=swapped, members=members,
                             seed=seed)
    return choose(scores, count, features=features, diverse=diverse, seed=seed)


def run_campaign(pool: pd.DataFrame, oracle: Oracle, heldout: pd.DataFrame, heldout_labels: np.ndarray, learner,
                 strategy: str, seed_size: int, batch_size: int, budget: int, seed: int = 0, diverse: bool = False,
                 features=None) -> list[dict]:
    """One campaign. `pool` is stripped of its labels here (whatever it holds); the labels of the seed set and of
    every batch come from `oracle.reveal`. `learner.fit(frame, labels, seed)` returns a predictor; `features`
    (a callable frame -> (N, F) matrix) is needed for `diverse`. Returns one dict per round: labels used,
    held-out log loss and accuracy, and the ids revealed that round."""
    check_strategy(strategy)
    pool = strip_labels(pool)
    heldout = strip_labels(heldout)
    heldout_labels = np.asarray(heldout_labels)
    if not 0 < seed_size <= len(pool) or batch_size < 1:
        raise DataError(f"campaign: seed set {seed_size} and batch {batch_size} must fit a pool of {len(pool)} rows")
    budget = min(budget, len(pool))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    labelled = list(order[:seed_size])
    labels = list(oracle.reveal(pool["id"].iloc[labelled]))
    rounds, revealed = [], list(pool["id"].iloc[labelled])
    while True:
        t0 = time.time()
        predictor = learner.fit(pool.iloc[labelled].reset_index(drop=True), np.array(labels), seed)
        probs = predictor.predict_proba(heldout)
        rounds.append({"labels": len(labelled), "log_loss": log_loss(heldout_labels, probs),
                       "accuracy": float((probs.argmax(1) == heldout_labels).mean()), "revealed": revealed})
        if len(labelled) >= budget:
            break
        taken = np.zeros(len(pool), bool)
        taken[labelled] = True
        candidates = np.flatnonzero(~taken)
        count = min(batch_size, budget - len(labelled), len(candidates))
        frame = pool.iloc[candidates].reset_index(drop=True)
        space = features(frame) if diverse else None
        picks = candidates[pick_batch(predictor, frame, strategy, count, diverse, seed * 1000 + len(rounds), space)]
        revealed = list(pool["id"].iloc[picks])
        labels += list(oracle.reveal(revealed))
        labelled += list(picks)
        rounds[-1]["seconds"] = round(time.time() - t0, 3)
    return rounds


# -- reading the curves -------------------------------------------------------------------------------------------
def labels_to_reach(labels, losses, target: float) -> float | None:
    """Labels at which a learning curve first reaches `target` log loss, by linear interpolation between the
    round before (above the target) and the round that reached it; None if it never does."""
    labels, losses = np.asarray(labels, dtype=float), np.asarray(losses, dtype=float)
    below = np.flatnonzero(losses <= target + 1e-12)
    if len(below) == 0:
        return None
    i = int(below[0])
    if i == 0:
        return float(labels[0])
    x0, x1, y0, y1 = labels[i - 1], labels[i], losses[i - 1], losses[i]
    return float(x0 + (y0 - target) / (y0 - y1) * (x1 - x0))


def summarize_campaigns(runs: dict[str, list[list[dict]]], baseline: str = "random") -> dict:
    """Curves averaged over seeds per strategy, the baseline's final log loss as the target, and the labels each
    strategy needs to reach it (interpolated on its mean curve) and so saves against the baseline."""
    strategies = {}
    for name, seeds in runs.items():
        labels = [r["labels"] for r in seeds[0]]
        if any([r["labels"] for r in s] != labels for s in seeds):
            raise DataError(f"campaign {name}: seeds ran different rounds")
        losses = np.array([[r["log_loss"] for r in s] for s in seeds])
        accuracy = np.array([[r["accuracy"] for r in s] for s in seeds])
        strategies[name] = {"labels": labels, "log_loss_mean": losses.mean(0).tolist(),
                            "log_loss_std": losses.std(0).tolist(), "accuracy_mean": accuracy.mean(0).tolist(),
                            "log_loss_per_seed": losses.tolist()}
    base = strategies[baseline]
    target = base["log_loss_mean"][-1]
    final_labels = base["labels"][-1]
    # Saved = labels the baseline needs to first reach its own final log loss - labels the strategy needs, both
    # read off the curves the same way. A noisy baseline curve can dip to its final value before the last round;
    # then it needs fewer than `final_labels`, and so the comparison stays like for like (the baseline saves 0).
    base_needed = labels_to_reach(base["labels"], base["log_loss_mean"], target)
    needed, saved = {}, {}
    for name, curve in strategies.items():
        needed[name] = labels_to_reach(curve["labels"], curve["log_loss_mean"], target)
        saved[name] = None if needed[name] is None else round(base_needed - needed[name], 1)
        # The same per seed (each seed's curve against that seed's baseline curve): the spread behind the mean.
        per_seed = []
        for s, losses in enumerate(curve["log_loss_per_seed"]):
            base_losses = base["log_loss_per_seed"][s]
            reach = labels_to_reach(curve["labels"], losses, base_losses[-1])
            base_reach = labels_to_reach(base["labels"], base_losses, base_losses[-1])
            per_seed.append(None if reach is None else round(base_reach - reach, 1))
        curve["labels_saved_per_seed"] = per_seed
        curve["final_log_loss"] = curve["log_loss_mean"][-1]
        # Paired by seed (seed s starts every strategy from the same seed set): the strategy minus the baseline,
        # at the last round and averaged over the rounds after the seed set, mean and standard error over seeds.
        diff = np.asarray(curve["log_loss_per_seed"]) - np.asarray(base["log_loss_per_seed"])
        n = len(diff)
        se = lambda x: float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else None
        later = diff[:, 1:].mean(axis=1) if diff.shape[1] > 1 else diff[:, 0]
        curve["vs_random"] = {"final_mean": float(diff[:, -1].mean()), "final_se": se(diff[:, -1]),
                              "rounds_mean": float(later.mean()), "rounds_se": se(later)}
    # The same question at every budget of the baseline: labels saved to reach its mean log loss at b labels.
    saved_at = {}
    for b, value in zip(base["labels"][1:], base["log_loss_mean"][1:]):
        base_b = labels_to_reach(base["labels"], base["log_loss_mean"], value)
        reach = {name: labels_to_reach(c["labels"], c["log_loss_mean"], value) for name, c in strategies.items()}
        saved_at[str(b)] = {name: None if r is None else round(base_b - r, 1) for name, r in reach.items()}
    return {"strategies": strategies, "target_log_loss": target, "target_labels": final_labels,
            "labels_needed": needed, "labels_saved_vs_random": saved, "labels_saved_at": saved_at}
