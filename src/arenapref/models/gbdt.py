"""The GBDT family: hand-made features (features.py) + LightGBM multiclass. Trains in seconds on a CPU.

Position symmetry: every training row is used twice, as is and with A and B swapped (label A <-> B), and every
prediction averages the row with its mirror (probabilities of A and B mapped back). The model so has no built-in
preference for a position; a real position bias in the data would have to be learned from other features.

Extra files (`--extra`): preference data from another distribution (arena_extra.csv is decisive battles, 3% ties)
would teach the 3-way model the wrong tie rate. By default (`gbdt_extra="direction"`) the model is then factored:
P(tie) comes from a binary model trained on the --data rows only, and P(A wins | not a tie) from a binary model
trained on the decisive rows of --data and of the extra files, so the extra rows teach only who wins; the three
probabilities are (1 - t) * d, (1 - t) * (1 - d), t. `gbdt_extra="all"` pools every row into the 3-way model.

Style term (`--style-term`, models/style_term.py): the model is factored the same way, and the A-vs-B part is a
linear style term (the leaderboard's four style differences) plus a content term, trees on the features that do not
measure length or markdown (features.content_matrix), fitted with the style term as a fixed offset (LightGBM's
init_score); the two are fitted in turn (style alone, trees given it, style given the trees, trees again, style
again: STYLE_ALTERNATIONS). Prediction with `style="controlled"` drops the style term. The ties' model is the
factored one's (every feature; a tie's probability does not change when A and B are exchanged).

Saved directory: model.txt (the 3-way LightGBM booster, text format) or model_tie.txt + model_direction.txt (the
factored model), arenapref.json (model_type "gbdt", feature names, parameters, calibration), written last like
every model directory.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from arenapref.data.features import (
    content_matrix,
    content_names,
    feature_blocks,
    feature_matrix,
    feature_names,
    swap_sides,
)
from arenapref.data.split import load_train_valid, prompt_groups, validation_scope
from arenapref.data.swap import swap_columns, swap_labels
from arenapref.data.tables import check_output_dir, write_text_atomic
from arenapref.errors import DataError
from arenapref.evaluation.calibration import calibrate
from arenapref.evaluation.metrics import classification_metrics
from arenapref.models import META_FILE
from arenapref.models.directory import training_meta, write_meta
from arenapref.models.style_term import (
    STYLE_ALTERNATIONS,
    StyleTerm,
    check_style,
    decisive_style,
    fit_style_term,
    style_ratios,
    style_scale,
)

BOOSTER_FILE = "model.txt"
FACTORED_FILES = {"tie": "model_tie.txt", "direction": "model_direction.txt", "content": "model_content.txt"}


def lgb_params(cfg) -> dict:
    return {
        "objective": "multiclass", "num_class": 3, "learning_rate": cfg.gbdt_learning_rate,
        "num_leaves": cfg.gbdt_num_leaves, "min_data_in_leaf": cfg.gbdt_min_data_in_leaf,
        # Small data: strong regularisation and row/feature subsampling keep the trees from chasing noise.
        "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 5.0,
        "seed": cfg.seed, "deterministic": True, "verbose": -1,
        # One thread: the data are small, and OpenMP threads spin-waiting on a busy machine cost 10x the time.
        "num_threads": 1,
    }


def mirrored_training_set(blocks: dict, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and their A/B mirrors, labels swapped accordingly."""
    features = np.vstack([feature_matrix(blocks), feature_matrix(swap_sides(blocks))])
    return features, np.concatenate([labels, swap_labels(labels)])


def symmetric_proba(booster, blocks: dict) -> np.ndarray:
    """Average of the row's prediction and its mirror's (columns mapped back): exactly symmetric in A and B."""
    direct = booster.predict(feature_matrix(blocks))
    mirrored = swap_columns(booster.predict(feature_matrix(swap_sides(blocks))))
    return (direct + mirrored) / 2


def fit_boosters(cfg, blocks: dict, labels: np.ndarray, is_extra: np.ndarray, ratios: np.ndarray | None = None) -> dict:
    """{"multiclass": booster}, or {"tie": ..., "direction": ...} when extra rows only teach the direction, or
    {"tie": ..., "content": ..., "style": StyleTerm} with a style term (`ratios`: style_ratios of the rows)."""
    import lightgbm as lgb

    names = feature_names()
    params = lgb_params(cfg)
    if getattr(cfg, "style_term", False):
        return fit_style_boosters(cfg, blocks, labels, is_extra, ratios)
    if not is_extra.any() or cfg.gbdt_extra == "all":
        features, mirrored = mirrored_training_set(blocks, labels)
        return {"multiclass": lgb.train(params, lgb.Dataset(features, mirrored, feature_name=names), cfg.gbdt_rounds)}
    binary = binary_params(cfg)
    tie = tie_booster(cfg, {k: v[~is_extra] for k, v in blocks.items()}, labels[~is_extra])
    decisive = labels < 2
    features, mirrored = mirrored_training_set({k: v[decisive] for k, v in blocks.items()}, labels[decisive])
    direction = lgb.train({**binary, "num_leaves": cfg.gbdt_direction_leaves},
                          lgb.Dataset(features, (mirrored == 0).astype(int), feature_name=names),
                          cfg.gbdt_direction_rounds)
    return {"tie": tie, "direction": direction}


def binary_params(cfg) -> dict:
    params = {**lgb_params(cfg), "objective": "binary"}
    del params["num_class"]
    return params


def tie_booster(cfg, blocks: dict, labels: np.ndarray):
    """P(tie) from every feature, on the rows and their mirrors."""
    import lightgbm as lgb

    features, mirrored = mirrored_training_set(blocks, labels)
    return lgb.train(binary_params(cfg),
                     lgb.Dataset(features, (mirrored == 2).astype(int), feature_name=feature_names()), cfg.gbdt_rounds)


def content_logit(booster, blocks: dict) -> np.ndarray:
    """The content term of a style-term model: the trees' raw score of the row minus its mirror's, halved (so it
    changes sign when A and B are exchanged)."""
    direct = booster.predict(content_matrix(blocks), raw_score=True)
    mirrored = booster.predict(content_matrix(swap_sides(blocks)), raw_score=True)
    return (direct - mirrored) / 2


def fit_style_boosters(cfg, blocks: dict, labels: np.ndarray, is_extra: np.ndarray, ratios: np.ndarray) -> dict:
    """Ties from the --data rows (every feature); who wins a decisive row (of --data and extra files) as style term
    + content term, fitted in turn (module docstring)."""
    import lightgbm as lgb

    own = {k: v[~is_extra] for k, v in blocks.items()}
    tie = tie_booster(cfg, own, labels[~is_extra])
    rows = {k: v[labels < 2] for k, v in blocks.items()}
    ratios, a_wins = decisive_style(ratios, labels)
    features = np.vstack([content_matrix(rows), content_matrix(swap_sides(rows))])
    targets = np.r_[a_wins, 1 - a_wins]
    scale = style_scale(ratios)
    # More rows than the 3-way model sees only with extra files: then the factored model's direction settings.
    leaves, rounds = ((cfg.gbdt_direction_leaves, cfg.gbdt_direction_rounds) if is_extra.any()
                      else (cfg.gbdt_num_leaves, cfg.gbdt_rounds))
    term = fit_style_term(ratios, a_wins, scale=scale)
    content = None
    for _ in range(STYLE_ALTERNATIONS):
        offset = term.logit(ratios)
        content = lgb.train({**binary_params(cfg), "num_leaves": leaves},
                            lgb.Dataset(features, targets, init_score=np.r_[offset, -offset],
                                        feature_name=content_names()), rounds)
        term = fit_style_term(ratios, a_wins, offset=content_logit(content, rows), scale=scale)
    return {"tie": tie, "content": content, "style": term}


def factored(tie: np.ndarray, a_wins: np.ndarray) -> np.ndarray:
    """P(A), P(B), P(tie) from P(tie) and P(A wins | not a tie)."""
    return np.column_stack([(1 - tie) * a_wins, (1 - tie) * (1 - a_wins), tie])


def boosters_proba(boosters: dict, blocks: dict, ratios: np.ndarray | None = None,
                   style: str = "as-voted") -> np.ndarray:
    """Symmetric 3-way probabilities of a multiclass, a factored (tie, direction) or a style-term (tie, content,
    style) model; `ratios` (style_ratios) for the last, whose style term `style="controlled"` leaves out."""
    if "multiclass" in boosters:
        return symmetric_proba(boosters["multiclass"], blocks)
    direct, mirrored = feature_matrix(blocks), feature_matrix(swap_sides(blocks))
    tie = (boosters["tie"].predict(direct) + boosters["tie"].predict(mirrored)) / 2
    if "content" in boosters:
        a_wins = 1 / (1 + np.exp(-style_content_logit(boosters, blocks, ratios, style)))
    else:
        a_wins = (boosters["direction"].predict(direct) + 1 - boosters["direction"].predict(mirrored)) / 2
    return factored(tie, a_wins)


def style_content_logit(boosters: dict, blocks: dict, ratios: np.ndarray, style: str) -> np.ndarray:
    """logit P(A wins | not a tie) of a style-term model: style term (unless controlled) + content term."""
    logit = content_logit(boosters["content"], blocks)
    if check_style(style) == "as-voted":
        logit = logit + boosters["style"].logit(ratios)
    return logit


def one_sided_proba(boosters: dict, blocks: dict, ratios: np.ndarray | None = None,
                    style: str = "as-voted") -> tuple[np.ndarray, np.ndarray]:
    """The boosters' answer for each row as given and for its mirror (mapped back to A/B order), before the two are
    averaged: they differ where the trees read (A, B) and (B, A) differently, i.e. where the model is unsure."""
    direct, mirrored = feature_matrix(blocks), feature_matrix(swap_sides(blocks))
    if "multiclass" in boosters:
        return boosters["multiclass"].predict(direct), swap_columns(boosters["multiclass"].predict(mirrored))
    styled = "content" in boosters
    style_logit = boosters["style"].logit(ratios) if styled and check_style(style) == "as-voted" else 0.0
    views = []
    for features, side_blocks, sign in ((direct, blocks, 1), (mirrored, swap_sides(blocks), -1)):
        if styled:
            content = boosters["content"].predict(content_matrix(side_blocks), raw_score=True)
            a_wins = 1 / (1 + np.exp(-(style_logit + sign * content)))
        else:
            a_wins = boosters["direction"].predict(features)
            a_wins = a_wins if sign > 0 else 1 - a_wins
        views.append(factored(boosters["tie"].predict(features), a_wins))
    return views[0], views[1]


def booster_files(boosters: dict) -> dict:
    return ({"multiclass": BOOSTER_FILE} if "multiclass" in boosters else
            {k: FACTORED_FILES[k] for k in boosters if k in FACTORED_FILES})


def train_gbdt(cfg, log=print, valid_out: dict | None = None) -> dict:
    """Fit on the training part (rows + mirrors), calibrate on validation, save the model directory.
    `valid_out` (a dict) receives the validation labels and calibrated probabilities (before any refit)."""
    output = check_output_dir(cfg.output)
    train_frame, valid_frame = load_train_valid(cfg, log)
    start = time.time()
    train_blocks, valid_blocks = feature_blocks(train_frame), feature_blocks(valid_frame)
    train_labels = train_frame["label"].to_numpy()
    is_extra = train_frame["is_extra"].to_numpy(bool) if "is_extra" in train_frame else np.zeros(len(train_frame), bool)
    styled = getattr(cfg, "style_term", False)
    train_ratios = style_ratios(train_frame) if styled else None
    valid_ratios = style_ratios(valid_frame) if styled else None
    boosters = fit_boosters(cfg, train_blocks, train_labels, is_extra, train_ratios)

    valid_labels = valid_frame["label"].to_numpy()
    temperature, probs = calibrate(np.log(boosters_proba(boosters, valid_blocks, valid_ratios)), valid_labels, log,
                                   prompt_groups(valid_frame))
    metrics = classification_metrics(valid_labels, probs)
    if valid_out is not None:
        valid_out.update(labels=valid_labels, probs=probs, frame=valid_frame)
    rows = len(train_frame)
    if cfg.gbdt_refit:
        # With ~1000 rows the held-out part is too valuable to leave out: refit on everything with the same
        # settings and keep the temperature measured on the held-out part (the validation metrics stay honest:
        # they are those of the model that did not see it).
        boosters = fit_boosters(cfg, {k: np.concatenate([train_blocks[k], valid_blocks[k]]) for k in train_blocks},
                                np.concatenate([train_labels, valid_labels]),
                                np.concatenate([is_extra, np.zeros(len(valid_frame), bool)]),
                                np.concatenate([train_ratios, valid_ratios]) if styled else None)
        rows += len(valid_frame)
    train_seconds = time.time() - start
    kind = ("3-way" if "multiclass" in boosters else
            "style term + content trees for who wins, ties apart" if "content" in boosters else
            f"factored: ties from {int((~is_extra).sum())} --data rows, direction from decisive rows incl. "
            f"{int(is_extra.sum())} extra")
    log(f"gbdt ({kind}): {rows} training rows (x2 mirrored){' incl. validation (refit)' if cfg.gbdt_refit else ''}, "
        f"{cfg.gbdt_rounds} rounds, {train_seconds:.1f}s")
    names = feature_names()
    params = lgb_params(cfg)
    if styled:
        log("style term (log-odds of A winning per standard deviation): " + ", ".join(
            f"{r['feature']} {r['coef']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
            for r in boosters["style"].table()))

    meta = training_meta(
        "gbdt", cfg,
        features=names,
        lightgbm_params=params,
        rounds=cfg.gbdt_rounds,
        boosters=booster_files(boosters),
        **({"style_term": {**boosters["style"].to_meta(), "content_features": content_names()}} if styled else {}),
        refit_on_validation=cfg.gbdt_refit,
        # The gbdt's probabilities are symmetric under an A/B swap (mirrored rows), so swap TTA changes nothing
        # and shares the temperature.
        calibration={"temperature": temperature, "temperature_swap": temperature, "fitted_on": "validation",
                     "rows": int(len(valid_labels))},
        train_rows=len(train_frame),
        valid_rows=len(valid_frame),
        train_seconds=round(train_seconds, 1),
        valid_metrics={k: v for k, v in metrics.items() if k != "confusion"},
        valid_metrics_scope=validation_scope(valid_frame, "validation rows held out from training (grouped by "
                                             "prompt); temperature cross-fitted (each row calibrated by a "
                                             "temperature fitted on the other rows)"),
    )
    output.mkdir(parents=True, exist_ok=True)
    (output / META_FILE).unlink(missing_ok=True)
    for key, name in booster_files(boosters).items():
        write_text_atomic(boosters[key].model_to_string(), output / name)
    write_meta(output, meta)
    return metrics


@contextmanager
def native_stderr_silenced():
    """LightGBM's C++ side prints "[LightGBM] [Fatal] ..." straight to stderr before raising; the exception becomes
    our one-line error instead, so the native print is dropped (file descriptor 2 points to /dev/null meanwhile)."""
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class GBDTBackend:
    """A saved GBDT model directory: features -> LightGBM -> symmetric probabilities, returned as log-probs."""

    def __init__(self, boosters: dict, meta: dict):
        self.boosters = boosters
        self.meta = meta
        # A model saved with a style term (models/style_term.py) can take it out: predict_logits(style=...).
        self.has_style_term = "content" in boosters

    @classmethod
    def load(cls, path, meta: dict, **options) -> GBDTBackend:
        """Inference options (device, dtype...) do not apply to trees: they are accepted and ignored."""
        files = meta.get("boosters", {"multiclass": BOOSTER_FILE})
        if set(files) not in ({"multiclass"}, {"tie", "direction"}, {"tie", "content"}):
            raise DataError(f"{Path(path) / META_FILE}: unknown boosters {sorted(files)}; retrain the model")
        style = None
        if "content" in files:
            try:
                style = StyleTerm.from_meta(meta["style_term"])
                widths = {"content": len(meta["style_term"]["content_features"])}
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{Path(path) / META_FILE}: a style-term model without a readable style_term "
                                "entry; retrain the model") from None
        boosters = {key: cls._load_booster(Path(path) / name, meta, classes=3 if key == "multiclass" else 1,
                                           features=widths.get(key) if style is not None else None)
                    for key, name in files.items()}
        if style is not None:
            boosters["style"] = style
        return cls(boosters, meta)

    @staticmethod
    def _load_booster(booster_path: Path, meta: dict, classes: int, features: int | None = None):
        import lightgbm as lgb

        if not booster_path.is_file():
            raise DataError(f"{booster_path}: missing; the model directory is incomplete, retrain or restore it")
        try:
            with native_stderr_silenced():
                booster = lgb.Booster(model_str=booster_path.read_text(encoding="utf-8"))
        except Exception as exc:  # LightGBM raises LightGBMError (and others) on a damaged file
            raise DataError(f"{booster_path}: cannot be loaded ({str(exc).splitlines()[0][:120]}); "
                            "the file is corrupt or truncated, retrain or restore it") from None
        expected = len(meta.get("features", [])) if features is None else features
        if booster.num_feature() != expected:
            raise DataError(f"{booster_path}: has {booster.num_feature()} features, {META_FILE} lists {expected}; "
                            "the directory mixes two models, retrain it")
        if booster.num_model_per_iteration() != classes:
            what = "a 3-class" if classes == 3 else "a binary"
            raise DataError(f"{booster_path}: not {what} model; retrain it with `arenapref train --model gbdt`")
        return booster

    def _ratios(self, frame):
        return style_ratios(frame) if self.has_style_term else None

    def predict_logits(self, frame, progress=None, style: str = "as-voted"):
        probs = boosters_proba(self.boosters, feature_blocks(frame), self._ratios(frame), style)
        if progress is not None:
            progress(len(frame))
        # Log-probabilities are logits whose softmax gives the probabilities back (and temperature applies).
        return np.log(np.clip(probs, 1e-12, 1.0)), None

    def one_sided_logits(self, frame, style: str = "as-voted") -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities of each row as given and of its mirror mapped back (see `one_sided_proba`)."""
        direct, mirrored = one_sided_proba(self.boosters, feature_blocks(frame), self._ratios(frame), style)
        return np.log(np.clip(direct, 1e-12, 1.0)), np.log(np.clip(mirrored, 1e-12, 1.0))
