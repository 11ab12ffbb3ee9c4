"""Side features for the neural heads, and the linear probe of LP-FT (linear probe, then fine-tune).

Side features: mean pooling hides what arena voters react to most (length, lists, refusals...), so the neural
heads also read the hand-made features of features.py: per side (31 numbers for prompt + response A, the same 31
for B) and shared (7 pair + 7 prompt numbers), as sign(x) * log(1 + |x|). The model standardises them with the
training rows' mean and standard deviation, kept in its weights (side statistics pooled over both sides, so
exchanging A and B exchanges the two blocks exactly).

Linear probe: before any fine-tuning the head is fitted on the frozen encoder's pooled vectors (+ side features)
by L2-regularised maximum likelihood, full batch with L-BFGS: a multinomial logistic regression for a 3-way head
(the same minimiser as scikit-learn's `LogisticRegression(C=...)`), a Davidson (Bradley-Terry with ties) model
for a rank head. Pooled vectors are standardised and multiplied by a block weight `scale` before the fit, so
that C regularises the hundreds of embedding dimensions and the few side features separately; C and scale are
picked by prompt-grouped cross-validation on the training rows (never the validation part). The fitted weights
are folded back into the head, so the model needs nothing extra at inference.

Direction from extra rows (`--extra`, 3-way heads): a file like arena_extra.csv (15k decisive battles, 3% ties)
would teach a 3-way head that ties never happen. Its rows instead fit a direction model, who wins a decisive
battle from the side-feature differences (fit_direction, on the decisive rows of --data and every extra file);
its logits [s/2, -s/2, 0] are a fixed offset under the probe's 3-way fit on the --data rows, and are folded into the
head with it. Only the extra rows' hand-made features are read: their pooled vectors would cost minutes per
thousand rows of encoding and measured no better (docs/benchmarks.md, "Choosing the recipe").
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from arenapref.data.features import SIDE_COUNT, content_side_mask, swap_features
from arenapref.data.swap import swap_columns, swap_labels
from arenapref.models.style_term import STYLE_ALTERNATIONS, decisive_style, fit_style_term

# Grid of the probe's inverse L2 strength C and of the pooled block's weight (see the module docstring).
C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SCALE_GRID = (0.03, 0.1, 0.3, 1.0)
# The direction model's C (fit_direction): thousands of rows over 31 inputs, so it matters little.
DIRECTION_C_GRID = (0.01, 0.1, 1.0)


# -- fitting -------------------------------------------------------------------------------------------------------
def _minimise(params: list[torch.Tensor], objective, max_iter: int = 500) -> None:
    opt = torch.optim.LBFGS(params, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)


def fit_softmax(X: np.ndarray, y: np.ndarray, C: float, max_iter: int = 500,
                offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: minimises C * sum(cross-entropy) + ||W||^2 / 2 (bias unpenalised), the
    objective of scikit-learn's LogisticRegression(C=C); `offset` (N, 3) is added to the logits, fixed.
    Returns W (3, D) and b (3,)."""
    x = torch.as_tensor(X, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.long)
    off = 0.0 if offset is None else torch.as_tensor(offset, dtype=torch.float64)
    W = torch.zeros((3, x.shape[1]), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def objective():
        ce = torch.nn.functional.cross_entropy(x @ W.T + b + off, t, reduction="sum")
        return C * ce + 0.5 * (W * W).sum()

    _minimise([W, b], objective, max_iter)
    return W.detach().numpy(), b.detach().numpy()


def davidson_logits(sa: torch.Tensor, sb: torch.Tensor, log_nu: torch.Tensor) -> torch.Tensor:
    return torch.stack([sa, sb, log_nu + 0.5 * (sa + sb)], dim=1)


def fit_davidson(Xa: np.ndarray, Xb: np.ndarray, y: np.ndarray, C: float,
                 max_iter: int = 500) -> tuple[np.ndarray, float]:
    """Linear side score s = w . x with Davidson ties: minimises C * sum(cross-entropy) + ||w||^2 / 2 over w and
    log nu (a score bias cancels in the model). Returns w (D,) and log nu."""
    xa, xb = (torch.as_tensor(v, dtype=torch.float64) for v in (Xa, Xb))
    t = torch.as_tensor(y, dtype=torch.long)
    w = torch.zeros(xa.shape[1], dtype=torch.float64, requires_grad=True)
    log_nu = torch.zeros((), dtype=torch.float64, requires_grad=True)

    def objective():
        ce = torch.nn.functional.cross_entropy(davidson_logits(xa @ w, xb @ w, log_nu), t, reduction="sum")
        return C * ce + 0.5 * (w * w).sum()

    _minimise([w, log_nu], objective, max_iter)
    return w.detach().numpy(), float(log_nu.detach())


def side_difference(features: np.ndarray) -> np.ndarray:
    """(N, SIDE_COUNT) standardised side features of A minus those of B: the direction model's inputs."""
    return features[:, :SIDE_COUNT] - features[:, SIDE_COUNT:2 * SIDE_COUNT]


def fit_direction(D: np.ndarray, a_wins: np.ndarray, C: float, max_iter: int = 500) -> np.ndarray:
    """Who wins a decisive battle from side-feature differences: P(A beats B) = sigmoid(w . d), no intercept, so
    exchanging A and B (d -> -d) gives exactly 1 - P. Minimises C * sum(log loss) + ||w||^2 / 2 (scikit-learn's
    LogisticRegression(C=C, fit_intercept=False)). Returns w (D,)."""
    d = torch.as_tensor(D, dtype=torch.float64)
    t = torch.as_tensor(a_wins, dtype=torch.float64)
    w = torch.zeros(d.shape[1], dtype=torch.float64, requires_grad=True)

    def objective():
        return C * torch.nn.functional.binary_cross_entropy_with_logits(d @ w, t, reduction="sum") + 0.5 * (w * w).sum()

    _minimise([w], objective, max_iter)
    return w.detach().numpy()


def ab_offset(s: np.ndarray) -> np.ndarray:
    """(N, 3) logits [s/2, -s/2, 0]: softmax then gives P(A) / P(B) = exp(s) whatever the tie logit is (the
    direction model's offset, and a style term's: models/dual_tower.style_offset is the same in the model)."""
    return np.column_stack([s / 2, -s / 2, np.zeros_like(s)])


def direction_offset(D: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The direction model's logits ab_offset(w . d), d the rows' direction inputs (side_difference): its
    P(A beats B) holds exactly among decisive outcomes."""
    return ab_offset(D @ w)


def choose_direction(D: np.ndarray, a_wins: np.ndarray, groups: np.ndarray, folds: int = 5, seed: int = 0,
                     c_grid=DIRECTION_C_GRID, log=print) -> dict:
    """Fit the direction model on every decisive row (--data and --extra), C by prompt-grouped k-fold CV on them."""
    from sklearn.model_selection import GroupKFold

    n = len(a_wins)
    folds = max(2, min(folds, len(np.unique(groups))))
    splits = list(GroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), a_wins, groups))
    table = []
    for C in c_grid:
        loss = 0.0
        for tr, va in splits:
            z = torch.as_tensor(D[va] @ fit_direction(D[tr], a_wins[tr], C))
            loss += float(torch.nn.functional.binary_cross_entropy_with_logits(
                z, torch.as_tensor(a_wins[va], dtype=torch.float64), reduction="sum"))
        table.append({"C": C, "cv_log_loss": loss / n})
    best = min(table, key=lambda r: r["cv_log_loss"])
    w = fit_direction(D, a_wins, best["C"])
    log(f"head direction: who wins from side-feature differences of {n} decisive rows, C={best['C']:g} "
        f"({folds}-fold grouped CV log loss {best['cv_log_loss']:.4f})")
    return {"weights": w, "C": best["C"], "rows": int(n), "cv_log_loss": best["cv_log_loss"], "folds": folds}


# -- the probe of one model ----------------------------------------------------------------------------------------
class ProbeData:
    """What the probe sees of the training rows.

    kind "pair":  pooled (N, 2, H), a vector per side (dual tower); "joint": pooled (N, H) of the row and
    pooled_swapped (N, H) of its A/B-exchanged rendering (cross-encoder). features: standardised (N, F) or None.
    rank: a per-side score (dual tower, rank objective) instead of a 3-way head.
    direction: weights of a direction model (fit_direction on side-feature differences, 3-way head only) whose
    logits (direction_offset) are added, fixed, to the head's: the head is fitted on top of it.
    """

    def __init__(self, kind: str, pooled: np.ndarray, labels: np.ndarray, features: np.ndarray | None = None,
                 pooled_swapped: np.ndarray | None = None, rank: bool = False, direction: np.ndarray | None = None,
                 offset: np.ndarray | None = None):
        self.kind, self.rank, self.labels = kind, rank, np.asarray(labels)
        if direction is not None and (rank or features is None):
            raise ValueError("a direction model needs a 3-way head with side features")
        self.direction = direction
        # Fixed (N, 3) logits under the head's: the direction model's, or a style term's (ab_offset).
        self.offset = offset if direction is None else direction_offset(side_difference(features), direction)
        flat = pooled.reshape(-1, pooled.shape[-1]).astype(np.float64)
        if pooled_swapped is not None:
            flat = np.vstack([flat, pooled_swapped.astype(np.float64)])
        # Pooled standardisation (one mean / std per dimension, over every side or rendering of the training rows).
        self.mean, self.std = flat.mean(0), np.where(flat.std(0) > 1e-8, flat.std(0), 1.0)
        self.pooled = (pooled - self.mean) / self.std
        self.pooled_swapped = None if pooled_swapped is None else (pooled_swapped - self.mean) / self.std
        self.features = features

    def design(self, scale: float, rows: np.ndarray):
        """Rank: (Xa, Xb). Classify: (X, X_swapped) whose rows are the rows and their A/B mirrors."""
        f = None if self.features is None else self.features[rows]
        s = SIDE_COUNT
        if self.rank:
            pa, pb = scale * self.pooled[rows, 0], scale * self.pooled[rows, 1]
            if f is None:
                return pa, pb
            return np.hstack([pa, f[:, :s]]), np.hstack([pb, f[:, s:2 * s]])
        if self.kind == "pair":
            p, q = scale * self.pooled[rows, 0], scale * self.pooled[rows, 1]
            direct, mirror = np.hstack([p, q]), np.hstack([q, p])
        else:
            direct, mirror = scale * self.pooled[rows], scale * self.pooled_swapped[rows]
        if f is not None:
            direct, mirror = np.hstack([direct, f]), np.hstack([mirror, swap_features(f)])
        return direct, mirror

    def fit(self, C: float, scale: float, rows: np.ndarray, offset: np.ndarray | None = None):
        """`offset` (N, 3) replaces the direction model's logits (choose_probe's refits); default self.offset."""
        y = self.labels[rows]
        first, second = self.design(scale, rows)
        if self.rank:
            return fit_davidson(first, second, y, C)
        offset = self.offset if offset is None else offset
        offset = None if offset is None else np.vstack([offset[rows], swap_columns(offset[rows])])
        return fit_softmax(np.vstack([first, second]), np.concatenate([y, swap_labels(y)]), C, offset=offset)

    def content_logit(self, params, scale: float, rows: np.ndarray) -> np.ndarray:
        """A 3-way head's own A-vs-B logit (without the offset), the row's and its mirror's averaged, so it changes
        sign when A and B are exchanged: the content term of a style-term model."""
        W, b = params
        direct, mirror = (x @ W.T + b for x in self.design(scale, rows))
        return ((direct[:, 0] - direct[:, 1]) - (mirror[:, 0] - mirror[:, 1])) / 2

    def log_loss(self, params, scale: float, rows: np.ndarray, offset: np.ndarray | None = None) -> float:
        first, second = self.design(scale, rows)
        if self.rank:
            w, log_nu = params
            logits = davidson_logits(torch.as_tensor(first @ w), torch.as_tensor(second @ w), torch.tensor(log_nu))
        else:
            W, b = params
            offset = self.offset if offset is None else offset
            logits = torch.as_tensor(first @ W.T + b + (0.0 if offset is None else offset[rows]))
        return float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(self.labels[rows])))


def content_only(features: np.ndarray) -> np.ndarray:
    """Standardised [side A, side B, shared] features with the side features a style-term head does not read
    (length and markdown: data/features.content_side_mask) set to 0, as the model masks them."""
    return features * np.concatenate([content_side_mask()] * 2 + [np.ones(features.shape[1] - 2 * SIDE_COUNT)])


def alternate_style(data: ProbeData, C: float, scale: float, ratios: np.ndarray, term, log=print):
    """A style-term head (models/style_term.py): the head given the style term, then the style term given the head's
    content logit, STYLE_ALTERNATIONS times, as the gbdt alternates trees and style (models/gbdt.py). `term` is the
    style term fitted alone; `data.offset` must be its ab_offset. Returns the head's parameters and the last
    style term (fitted given that head, so its intervals are conditional on the content term)."""
    rows = np.arange(len(data.labels))
    decisive = data.labels < 2
    decisive_ratios, a_wins = decisive_style(ratios, data.labels)
    for _ in range(STYLE_ALTERNATIONS):
        data.offset = ab_offset(term.logit(ratios))
        params = data.fit(C, scale, rows)
        content = data.content_logit(params, scale, rows)
        term = fit_style_term(decisive_ratios, a_wins, offset=content[decisive], scale=term.scale)
    log("style term (log-odds of A winning per standard deviation): " + ", ".join(
        f"{r['feature']} {r['coef']:+.3f}" for r in term.table()))
    return params, term


def direction_refits(inputs: np.ndarray, D: np.ndarray, a_wins: np.ndarray, source: np.ndarray, C: float):
    """For choose_probe's CV: training rows of a split -> the (N, 3) offset of a direction model refitted on the
    extra rows and those rows only, so no held-out row's label reaches its own score. `inputs`: the direction
    inputs of the N probe rows; `D`, `a_wins`: the direction model's rows, `source` the probe row each comes from
    (-1: an extra row)."""
    def offset_for(train_rows: np.ndarray) -> np.ndarray:
        keep = (source < 0) | np.isin(source, train_rows)
        return direction_offset(inputs, fit_direction(D[keep], a_wins[keep], C))
    return offset_for


def choose_probe(data: ProbeData, groups: np.ndarray, folds: int = 5, seed: int = 0, c_grid=C_GRID,
                 scale_grid=SCALE_GRID, log=print, offset_for=None) -> dict:
    """Grid search of (C, scale) by prompt-grouped k-fold CV on the training rows; returns the best setting,
    its CV log loss and the full table. Without side features the scale only rescales C, so it stays 1.
    `offset_for` (direction_refits): the direction model's offset per split, refitted without the held-out rows;
    without it the fixed data.offset is used (fitted on every row: optimistic)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if data.features is None:
        scale_grid = (1.0,)
    n = len(data.labels)
    folds = max(2, min(folds, len(np.unique(groups)), int(np.bincount(data.labels).min()) or 2))
    splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), data.labels, groups))
    offsets = [None if offset_for is None else offset_for(tr) for tr, _ in splits]
    table = []
    for C, scale in itertools.product(c_grid, scale_grid):
        losses = [data.log_loss(data.fit(C, scale, tr, off), scale, va, off) * len(va)
                  for (tr, va), off in zip(splits, offsets)]
        table.append({"C": C, "scale": scale, "cv_log_loss": float(sum(losses) / n)})
    best = min(table, key=lambda r: r["cv_log_loss"])
    log(f"linear probe: C={best['C']:g}, pooled-vector weight {best['scale']:g} "
        f"({folds}-fold grouped CV log loss {best['cv_log_loss']:.4f} on {n} training rows)")
    return {**best, "folds": folds, "grid": table}


def fold_into_head(data: ProbeData, params, scale: float, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Head weight and bias on the model's own inputs (raw pooled vectors, standardised features) that give the
    same logits / scores as `params` on the probe's design (standardised, scaled pooled vectors)."""
    factor = scale / data.std                  # (H,)
    offset = scale * data.mean / data.std      # (H,)
    if data.rank:
        w, _ = params
        weight = w.copy()
        weight[:hidden] *= factor
        return weight[None, :], np.array([-(w[:hidden] @ offset)])
    W, b = params
    weight, bias = W.copy(), b.copy()
    blocks = 2 if data.kind == "pair" else 1
    for k in range(blocks):
        part = slice(k * hidden, (k + 1) * hidden)
        bias -= W[:, part] @ offset
        weight[:, part] = W[:, part] * factor
    if data.direction is not None:  # + [s/2, -s/2, 0], s = w . (f_A - f_B): linear in the two side blocks
        s, half = blocks * hidden, data.direction / 2
        weight[0, s:s + SIDE_COUNT] += half
        weight[0, s + SIDE_COUNT:s + 2 * SIDE_COUNT] -= half
        weight[1, s:s + SIDE_COUNT] -= half
        weight[1, s + SIDE_COUNT:s + 2 * SIDE_COUNT] += half
    return weight, bias
