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
thousand rows of encoding and measured no better (docs/benchmarks.md, "Choosing the recipe"). A style-term head
(StyleProbe) is the exception: its A-vs-B logit reads no length, and there the extra rows' text does help.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch

from arenapref.data.features import SIDE_COUNT, content_side_mask, swap_features
from arenapref.data.swap import swap_columns, swap_labels
from arenapref.models.style_term import STYLE_ALTERNATIONS, fit_style_term

# Grid of the probe's inverse L2 strength C and of the pooled block's weight (see the module docstring).
C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SCALE_GRID = (0.03, 0.1, 0.3, 1.0)
# A style-term head's A-vs-B grid when --extra rows (thousands) join its fit: each fit then takes seconds, and on
# arena_sample + arena_extra the larger C and pooled weights were never chosen (docs/style-control.md).
EXTRA_C_GRID = (1e-3, 3e-3, 1e-2)
EXTRA_SCALE_GRID = (0.1, 0.3)
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


def direction_offset(D: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The direction model's (N, 3) logits [s/2, -s/2, 0], s = w . d, d the rows' direction inputs
    (side_difference): softmax then gives P(A) / P(B) = exp(s) whatever the tie logit is, so its P(A beats B) holds
    exactly among decisive outcomes."""
    s = D @ w
    return np.column_stack([s / 2, -s / 2, np.zeros_like(s)])


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
                 pooled_swapped: np.ndarray | None = None, rank: bool = False, direction: np.ndarray | None = None):
        self.kind, self.rank, self.labels = kind, rank, np.asarray(labels)
        if direction is not None and (rank or features is None):
            raise ValueError("a direction model needs a 3-way head with side features")
        self.direction = direction
        # Fixed (N, 3) logits under the head's: the direction model's.
        self.offset = None if direction is None else direction_offset(side_difference(features), direction)
        flat = pooled.reshape(-1, pooled.shape[-1]).astype(np.float64)
        if pooled_swapped is not None:
            flat = np.vstack([flat, pooled_swapped.astype(np.float64)])
        # Pooled standardisation (one mean / std per dimension, over every side or rendering of the training rows).
        self.mean, self.std = flat.mean(0), np.where(flat.std(0) > 1e-8, flat.std(0), 1.0)
        self.pooled = (pooled - self.mean) / self.std
        self.pooled_swapped = None if pooled_swapped is None else (pooled_swapped - self.mean) / self.std
        self.features = features

    def rows_like(self, pooled: np.ndarray, labels: np.ndarray, features: np.ndarray | None,
                  pooled_swapped: np.ndarray | None = None) -> ProbeData:
        """Other rows (held out, or --extra) with these rows' pooled standardisation."""
        other = copy.copy(self)
        other.labels, other.features, other.offset, other.direction = np.asarray(labels), features, None, None
        other.pooled = (pooled - self.mean) / self.std
        other.pooled_swapped = None if pooled_swapped is None else (pooled_swapped - self.mean) / self.std
        return other

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


# -- a style-term head (models/dual_tower.factored_logits) ----------------------------------------------------------
# Its logits factor as P(tie) = sigmoid(u), P(A wins | not a tie) = sigmoid(d + t): u reads every feature with the
# side blocks symmetrised (ties keep their own model, and exchanging which answer is longer leaves u as it is), d
# reads the pooled text and the content features only (length and markdown masked) and t is the style term. The
# probe fits u on the --data rows, d and t on the decisive --data rows and, given, the decisive --extra rows (who
# wins among decisive battles is what those rows can teach without teaching that ties never happen).
def content_only(features: np.ndarray) -> np.ndarray:
    """Standardised [side A, side B, shared] features with the side features a style-term head does not read
    (length and markdown: data/features.content_side_mask) set to 0, as the model masks them."""
    return features * np.concatenate([content_side_mask()] * 2 + [np.ones(features.shape[1] - 2 * SIDE_COUNT)])


def symmetric_sides(features: np.ndarray) -> np.ndarray:
    """Standardised [side A, side B, shared] with both side blocks replaced by their mean: what the tie row reads."""
    s = SIDE_COUNT
    both = (features[:, :s] + features[:, s:2 * s]) / 2
    return np.hstack([both, both, features[:, 2 * s:]])


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float, offset: np.ndarray | None = None, intercept: bool = True,
                 max_iter: int = 500) -> tuple[np.ndarray, float]:
    """Binary logistic regression: minimises C * sum(log loss) + ||w||^2 / 2 (intercept unpenalised), `offset`
    added to the logit, fixed. Returns w (D,) and the intercept (0.0 without)."""
    x = torch.as_tensor(X, dtype=torch.float64)
    t = torch.as_tensor(y, dtype=torch.float64)
    off = 0.0 if offset is None else torch.as_tensor(offset, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=intercept)

    def objective():
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b + off, t, reduction="sum")
        return C * loss + 0.5 * (w * w).sum()

    _minimise([w, b] if intercept else [w], objective, max_iter)
    return w.detach().numpy(), float(b.detach())


def binary_log_loss(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, z) - y * z))


class StyleProbe:
    """The probe of a style-term head. `data`: the --data rows with their standardised features (all of them: the
    tie logit reads them symmetrised, the A-vs-B logit only content_only's); `ratios` their style differences;
    `extra` (optional): the decisive --extra rows, their pooled vectors standardised like the --data rows', and
    `extra_ratios`."""

    def __init__(self, data: ProbeData, ratios: np.ndarray, extra: ProbeData | None = None,
                 extra_ratios: np.ndarray | None = None):
        self.tie_data = copy.copy(data)
        self.tie_data.features = symmetric_sides(data.features)
        self.data = copy.copy(data)
        self.data.features = content_only(data.features)
        if extra is not None:
            extra = copy.copy(extra)
            extra.features = content_only(extra.features)
        self.extra = extra
        self.ratios = ratios
        self.extra_ratios = np.zeros((0, ratios.shape[1])) if extra is None else extra_ratios
        self.extra_wins = np.zeros(0) if extra is None else (extra.labels == 0).astype(np.float64)

    def direction_design(self, source: ProbeData, scale: float, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X, X_mirror) of the A-vs-B logit d. A dual tower's d is antisymmetric (weights (w, -w) on the two
        sides), so X is [pooled A - pooled B, features A - features B] and the mirror is -X: half the rows and
        width of the full fit, and the same optimum. A cross-encoder's row and mirror are its two renderings."""
        if source.kind == "pair":
            s = SIDE_COUNT
            f = source.features[rows]
            x = np.hstack([scale * (source.pooled[rows, 0] - source.pooled[rows, 1]), f[:, :s] - f[:, s:2 * s]])
            return x, -x
        return source.design(scale, rows)

    def direction_rows(self, scale: float, rows: np.ndarray, offset: np.ndarray):
        """Decisive training rows of `rows` (+ every extra row), mirrored: X, A-wins, offsets."""
        rows = rows[self.data.labels[rows] < 2]
        parts = [self.direction_design(self.data, scale, rows)]
        wins = [(self.data.labels[rows] == 0).astype(np.float64)]
        offsets = [offset[rows]]
        if self.extra is not None:
            parts.append(self.direction_design(self.extra, scale, np.arange(len(self.extra.labels))))
            wins.append(self.extra_wins)
            offsets.append(offset[len(self.data.labels):])
        x = np.vstack([p[0] for p in parts] + [p[1] for p in parts])
        y, o = np.concatenate(wins), np.concatenate(offsets)
        return x, np.concatenate([y, 1 - y]), np.concatenate([o, -o])

    def content(self, w: np.ndarray, scale: float) -> np.ndarray:
        """Content logit d (the row's and its mirror's averaged) of every --data row, then every extra row."""
        out = []
        for source in (self.data, self.extra):
            if source is not None:
                x, mirror = self.direction_design(source, scale, np.arange(len(source.labels)))
                out.append((x @ w - mirror @ w) / 2)
        return np.concatenate(out)

    def all_ratios(self) -> np.ndarray:
        return np.vstack([self.ratios, self.extra_ratios])

    def choose(self, groups: np.ndarray, term, folds: int = 5, seed: int = 0, c_grid=C_GRID,
               scale_grid=SCALE_GRID, log=print) -> dict:
        """(C, scale) of the tie logit and of the A-vs-B logit (style term `term` fixed), each by prompt-grouped
        k-fold CV on the --data rows; extra rows are in every training split, never held out."""
        from sklearn.model_selection import StratifiedGroupKFold

        labels, n = self.data.labels, len(self.data.labels)
        folds = max(2, min(folds, len(np.unique(groups)), int(np.bincount(labels, minlength=3).min()) or 2))
        splits = list(StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(np.zeros(n), labels, groups))
        offset = term.logit(self.all_ratios())
        tie_table, ab_table = [], []
        for C, scale in itertools.product(c_grid, scale_grid):
            tie_loss = 0.0
            for tr, va in splits:
                w, b = self.fit_tie(C, scale, tr)
                tie_loss += binary_log_loss(self.tie_data.design(scale, va)[0] @ w + b, labels[va] == 2) * len(va)
            tie_table.append({"C": C, "scale": scale, "cv_log_loss": tie_loss / n})
        if self.extra is not None:
            c_grid, scale_grid = EXTRA_C_GRID, EXTRA_SCALE_GRID
        for C, scale in itertools.product(c_grid, scale_grid):
            ab_loss = 0.0
            for tr, va in splits:
                x, y, o = self.direction_rows(scale, tr, offset)
                w, _ = fit_logistic(x, y, C, o, intercept=False)
                held = va[labels[va] < 2]
                z = self.direction_design(self.data, scale, held)[0] @ w + offset[held]
                ab_loss += binary_log_loss(z, labels[held] == 0) * len(held)
            ab_table.append({"C": C, "scale": scale, "cv_log_loss": ab_loss / int((labels < 2).sum())})
        tie, ab = (min(t, key=lambda r: r["cv_log_loss"]) for t in (tie_table, ab_table))
        log(f"linear probe, style-term head: tie C={tie['C']:g} weight {tie['scale']:g} (CV log loss "
            f"{tie['cv_log_loss']:.4f}), A vs B C={ab['C']:g} weight {ab['scale']:g} (CV log loss on decisive rows "
            f"{ab['cv_log_loss']:.4f}; {folds}-fold grouped, {n} training rows"
            + ("" if self.extra is None else f" + {len(self.extra.labels)} decisive extra rows") + ")")
        return {"tie": tie, "ab": ab, "folds": folds}

    def fit_tie(self, C: float, scale: float, rows: np.ndarray) -> tuple[np.ndarray, float]:
        x, mirror = self.tie_data.design(scale, rows)
        is_tie = (self.data.labels[rows] == 2).astype(np.float64)
        return fit_logistic(np.vstack([x, mirror]), np.concatenate([is_tie, is_tie]), C)

    def fit(self, chosen: dict, term, log=print):
        """The tie logit, then the A-vs-B logit given the style term and the style term given the A-vs-B logit,
        STYLE_ALTERNATIONS times (as the gbdt alternates trees and style). Returns the head's (W (3, D), b (3,)) on
        the probe's design and the last style term (its intervals conditional on the content term)."""
        rows = np.arange(len(self.data.labels))
        w_tie, b_tie = self.fit_tie(chosen["tie"]["C"], chosen["tie"]["scale"], rows)
        scale, ratios = chosen["ab"]["scale"], self.all_ratios()
        a_wins = np.concatenate([self.data.labels == 0, self.extra_wins]).astype(np.float64)
        decisive = np.concatenate([self.data.labels < 2, np.ones(len(self.extra_wins), bool)])
        for _ in range(STYLE_ALTERNATIONS):
            x, y, o = self.direction_rows(scale, rows, term.logit(ratios))
            w, _ = fit_logistic(x, y, chosen["ab"]["C"], o, intercept=False)
            term = fit_style_term(ratios[decisive], a_wins[decisive], offset=self.content(w, scale)[decisive],
                                  scale=term.scale)
        log("style term (log-odds of A winning per standard deviation): " + ", ".join(
            f"{r['feature']} {r['coef']:+.3f}" for r in term.table()))
        return self.head(w, scale, w_tie, b_tie, chosen["tie"]["scale"]), term

    def head(self, w: np.ndarray, scale: float, w_tie: np.ndarray, b_tie: float, tie_scale: float):
        """(W, b) of the model's 3-row head on the probe's full design with pooled weight 1 (fold_into_head with
        scale 1): rows 0 / 1 give d = row 0 - row 1 on the content inputs, row 2 the tie logit u."""
        hidden = self.data.pooled.shape[-1]
        blocks = 2 if self.data.kind == "pair" else 1
        width = blocks * hidden + self.data.features.shape[1]
        if self.data.kind == "pair":  # back from [A - B] to (w, -w) on the two sides
            s = SIDE_COUNT
            pooled, side = scale * w[:hidden], w[hidden:]
            d = np.concatenate([pooled, -pooled, side, -side, np.zeros(width - 2 * hidden - 2 * s)])
        else:
            d = np.concatenate([scale * w[:hidden], w[hidden:]])
        tie = np.concatenate([tie_scale * w_tie[:blocks * hidden], w_tie[blocks * hidden:]])
        return np.vstack([d / 2, -d / 2, tie]), np.array([0.0, 0.0, b_tie])

    def predict(self, params, rows: np.ndarray, style_logit: np.ndarray | None) -> np.ndarray:
        """(len(rows), 3) probabilities of the --data rows `rows` from head(...) params (tests, benches);
        `style_logit` None: controlled (style term 0)."""
        W, b = params
        x_content, _ = self.data.design(1.0, rows)
        x_tie, _ = self.tie_data.design(1.0, rows)
        d = x_content @ (W[0] - W[1]) + (0.0 if style_logit is None else style_logit)
        t = 1 / (1 + np.exp(-(x_tie @ W[2] + b[2])))
        p = 1 / (1 + np.exp(-d))
        return np.column_stack([(1 - t) * p, (1 - t) * (1 - p), t])


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
