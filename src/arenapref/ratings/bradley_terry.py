"""The Bradley-Terry engine behind the leaderboards: one Newton solver for every fit, batched over bootstrap rounds.

A fit's unit is a *row*: a pair of models (a, b) with summed outcome weights (A wins, B wins, tie), or, for style
control, one battle with its style covariates x. Every likelihood here depends on a row only through

    d = theta_a - theta_b + x . beta          (natural-log strengths theta, style coefficients beta)

and, for Davidson ties, eta = log(nu):

    half:      P(A) = sigmoid(d), a tie counts half a win each way (FastChat's compute_mle_elo likelihood)
    davidson:  P(A), P(B), P(tie) = softmax(d / 2, -d / 2, eta)  (Davidson 1970, pi_a / pi_b = e^d)

so the gradient and the Hessian are the per-row derivatives in (d, eta) mapped onto the parameters. The plain fit
sums battles into at most (models^2) pair rows once, after which nothing grows with the number of battles. Style
control keeps battles as rows (each has its own covariates) but still assembles the ratings block from pair sums.

Newton's method with an exact Hessian converges in a handful of iterations (the log-likelihood is concave). A
bootstrap round starts at the full-data fit, where one Hessian (inverted once) serves its 2-3 steps, each then a
gradient only; rounds are solved together as one batch (a stack of Hessians), which is what makes 1,000 rounds
cheap. Intervals without resampling:
the sandwich covariance H^-1 (sum of per-battle score outer products) H^-1, robust to the half-win likelihood not
being the true model of ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.special import expit

# A negligible ridge on every parameter (a Gaussian prior with sd 22 on the natural-log scale, about 3900 Elo):
# the plain MLE on connected data, a finite rating for a model that never lost (where the MLE runs off to
# infinity), a finite tie weight when there are no ties, and an invertible Hessian (the mean rating is fixed at 0).
RIDGE = 1e-3
TIES = ("half", "davidson")


@dataclass
class Design:
    """The rows of a fit: `pairs` (P, 2) model indices, and for battle rows (style control) the pair of each row
    and the (R, K) covariates, dense or a scipy sparse matrix (the per-prompt model's model-by-feature columns).
    Without `pair_of_row` the rows are the pairs themselves."""

    pairs: np.ndarray
    n_models: int
    pair_of_row: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self):
        a, b = self.pairs[:, 0], self.pairs[:, 1]
        n_pairs, m = len(self.pairs), self.n_models
        rows = np.arange(n_pairs)
        # incidence (P, M): +1 at a, -1 at b. d = theta @ incidence.T, gradient = per-pair slope @ incidence.
        self.incidence = sparse.csr_matrix((np.r_[np.ones(n_pairs), -np.ones(n_pairs)],
                                            (np.r_[rows, rows], np.r_[a, b])),
                                           shape=(n_pairs, m))
        # laplacian (M*M, P): a pair's curvature h lands at (a,a) and (b,b) with +h, (a,b) and (b,a) with -h.
        flat = np.r_[a * m + a, b * m + b, a * m + b, b * m + a]
        values = np.r_[np.ones(2 * n_pairs), -np.ones(2 * n_pairs)]
        self.laplacian = sparse.csr_matrix((values, (flat, np.tile(rows, 4))), shape=(m * m, n_pairs))
        self.involvement = abs(self.incidence)
        if self.features is not None and sparse.issparse(self.features):
            self.features = sparse.csr_matrix(self.features, dtype=float)
        elif self.features is not None:  # column by column below: keep each column contiguous
            self.features = np.asfortranarray(self.features, dtype=float)
        self.n_features = 0 if self.features is None else self.features.shape[1]

    @property
    def n_rows(self) -> int:
        return len(self.pairs) if self.pair_of_row is None else len(self.pair_of_row)

    def pair_sums(self, values: np.ndarray) -> np.ndarray:
        """(B, R) per-row values -> (B, P) sums per pair."""
        if self.pair_of_row is None:
            return values
        return np.stack([np.bincount(self.pair_of_row, v, len(self.pairs)) for v in values])

    def to_models(self, pair_values: np.ndarray) -> np.ndarray:
        """(B, P) -> (B, M): sum of +value over pairs where the model is a, -value where it is b."""
        return np.asarray(self.incidence.T @ pair_values.T).T

    def model_totals(self, pair_values: np.ndarray) -> np.ndarray:
        """(B, P) -> (B, M): sum over the pairs a model is in (either side)."""
        return np.asarray(self.involvement.T @ pair_values.T).T

    def rating_block(self, pair_values: np.ndarray) -> np.ndarray:
        """(B, P) curvatures -> (B, M, M): sum over pairs of h (e_a - e_b)(e_a - e_b)^T."""
        m = self.n_models
        return np.asarray(self.laplacian @ pair_values.T).T.reshape(-1, m, m)

    def logits(self, theta: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
        """(B, M) strengths and (B, K) coefficients -> (B, R) differences d."""
        diff = np.asarray(self.incidence @ theta.T).T
        if self.pair_of_row is not None:
            diff = diff[:, self.pair_of_row]
        if self.n_features:
            diff = diff + self.times_features(beta, transpose=True)
        return diff

    def times_features(self, values: np.ndarray, transpose: bool = False) -> np.ndarray:
        """(B, R) per-row values -> (B, K) sums of value * covariate; with `transpose`, (B, K) -> (B, R)."""
        x = self.features
        if sparse.issparse(x):
            return np.asarray((x @ values.T) if transpose else (x.T @ values.T)).T
        return values @ x.T if transpose else values @ x

    def row_incidence(self):
        """(R, M) sparse: +1 at each row's model a, -1 at its b."""
        return self.incidence if self.pair_of_row is None else self.incidence[self.pair_of_row]


def n_params(design: Design, ties: str) -> int:
    return design.n_models + design.n_features + (ties == "davidson")


def _split(design: Design, params: np.ndarray, ties: str):
    m, k = design.n_models, design.n_features
    theta = params[:, :m]
    beta = params[:, m:m + k] if k else None
    eta = params[:, -1] if ties == "davidson" else None
    return theta, beta, eta


def outcome_summary(weights: np.ndarray, ties: str) -> tuple:
    """What the likelihood needs of (B, R, 3) outcome weights (A wins, B wins, tie), computed once per fit:
    half: (total, A's score = wins + ties / 2); davidson: (total, A wins - B wins, ties)."""
    total = weights.sum(axis=-1)
    if ties == "half":
        return total, weights[..., 0] + weights[..., 2] / 2  # a tie is half a win for each side
    return total, weights[..., 0] - weights[..., 1], weights[..., 2]


def row_terms(d: np.ndarray, eta, summary: tuple, ties: str):
    """Negative log-likelihood per batch and the per-row derivatives in (d, eta).

    summary: outcome_summary of the rows' weights. Returns nll (B,), first derivatives (g_d, g_eta) and second
    derivatives (h_dd, h_de, h_ee), (B, R) arrays (the eta ones None for half ties).
    """
    if ties == "half":
        total, score_a = summary
        # s log(1 + e^-d) + (n - s) log(1 + e^d) = n log(1 + e^-d) + (n - s) d, from one exp and one log1p.
        e = np.exp(-np.abs(d))
        nll = (total * (np.maximum(-d, 0) + np.log1p(e)) + (total - score_a) * d).sum(axis=1)
        p = np.where(d >= 0, 1.0, e) / (1 + e)  # sigmoid(d)
        return nll, (total * p - score_a, None), (total * p * (1 - p), None, None)
    total, margin, tied = summary
    # Davidson: logits (d/2, -d/2, eta); +-d/2 and eta shifted by their maximum so exp never overflows.
    half = d / 2
    e = eta[:, None]
    top = np.maximum(np.abs(half), e)
    ea, eb, et = np.exp(half - top), np.exp(-half - top), np.exp(e - top)
    norm = ea + eb + et
    pa, pb, pt = ea / norm, eb / norm, et / norm
    nll = (total * (top + np.log(norm)) - margin * half - tied * e).sum(axis=1)
    diff = pa - pb
    g_d = (total * diff - margin) / 2
    g_e = total * pt - tied
    h_dd = total * ((pa + pb) / 4 - (diff / 2) ** 2)
    h_de = -total * pt * diff / 2
    h_ee = total * pt * (1 - pt)
    return nll, (g_d, g_e), (h_dd, h_de, h_ee)


def assemble(design: Design, ties: str, first, second=None):
    """Map per-row derivatives onto the parameters: gradient (B, n), and with `second` the matrix (B, n, n)
    sum_rows J^T [[h_dd, h_de], [h_de, h_ee]] J, J = d(d, eta)/d(params) (a Hessian, or a sandwich's meat)."""
    g_d, g_e = first
    m, k = design.n_models, design.n_features
    batch = g_d.shape[0]
    size = n_params(design, ties)
    grad = np.zeros((batch, size))
    grad[:, :m] = design.to_models(design.pair_sums(g_d))
    if k:
        grad[:, m:m + k] = design.times_features(g_d)
    if ties == "davidson":
        grad[:, -1] = g_e.sum(axis=1)
    if second is None:
        return grad
    h_dd, h_de, h_ee = second
    hess = np.zeros((batch, size, size))
    hess[:, :m, :m] = design.rating_block(design.pair_sums(h_dd))
    if k and sparse.issparse(design.features):  # many covariates, few per row: sparse products per batch member
        x, rows = design.features, design.row_incidence()
        for i in range(batch):
            hx = x.multiply(h_dd[i][:, None]).tocsc()
            cross = (rows.T @ hx).toarray()
            hess[i, :m, m:m + k], hess[i, m:m + k, :m] = cross, cross.T
            hess[i, m:m + k, m:m + k] = (x.T @ hx).toarray()
    elif k:
        x = design.features
        weighted = [h_dd * x[:, j] for j in range(k)]  # (B, R) each: h x_j, shared by both blocks
        cross = np.stack([design.to_models(design.pair_sums(v)) for v in weighted], axis=2)
        hess[:, :m, m:m + k] = cross
        hess[:, m:m + k, :m] = cross.transpose(0, 2, 1)
        for j in range(k):
            for i in range(j, k):
                hess[:, m + j, m + i] = hess[:, m + i, m + j] = weighted[j] @ x[:, i]
    if ties == "davidson":
        col = design.to_models(design.pair_sums(h_de))
        hess[:, :m, -1] = hess[:, -1, :m] = col
        if k:
            hess[:, m:m + k, -1] = hess[:, -1, m:m + k] = design.times_features(h_de)
        hess[:, -1, -1] = h_ee.sum(axis=1)
    return grad, hess


def objective(design: Design, weights: np.ndarray, params: np.ndarray, ties: str, hessian: bool = True,
              ridge: float | np.ndarray = RIDGE):
    """Penalised negative log-likelihood (B,), its gradient (B, n) and Hessian (B, n, n) at a batch of params,
    for (B, R, 3) outcome weights."""
    return _objective(design, outcome_summary(weights, ties), params, ties, hessian, ridge)


def _objective(design: Design, summary: tuple, params: np.ndarray, ties: str, hessian: bool = True,
               ridge: float | np.ndarray = RIDGE):
    theta, beta, eta = _split(design, params, ties)
    nll, first, second = row_terms(design.logits(theta, beta), eta, summary, ties)
    nll = nll + (ridge * params ** 2).sum(axis=1)
    if not hessian:
        return nll, assemble(design, ties, first) + 2 * ridge * params
    grad, hess = assemble(design, ties, first, second)
    grad += 2 * ridge * params
    hess[:, np.arange(params.shape[1]), np.arange(params.shape[1])] += 2 * ridge
    return nll, grad, hess


def newton(design: Design, weights: np.ndarray, ties: str, start: np.ndarray | None = None,
           max_iter: int = 100, tol: float = 1e-5, ridge: float | np.ndarray = RIDGE) -> np.ndarray:
    """Maximum-likelihood parameters (B, n) for a batch of weightings (B, R, 3) of the same rows, penalised by
    `ridge` times their squared norm (any ridge > 0 also fixes the mean rating at 0); an (n,) `ridge` penalises each
    parameter by its own.

    Damped Newton: the full step unless it fails to decrease the objective (Armijo), then halved for that batch
    member only. The Hessian is kept while the steps it gives shrink fast (each under a quarter of the one
    before) and refreshed otherwise: from a warm start (a bootstrap round begun at the full-data fit) the first
    Hessian serves every step, and a step costs a gradient only. A step that moves no parameter by more than
    `tol` (1e-5 on the natural-log scale, 0.002 Elo) is the last: the convergence, quadratic or nearly, leaves
    the error after it a small fraction of that.
    """
    batch = weights.shape[0]
    summary = outcome_summary(weights, ties)
    params = np.zeros((batch, n_params(design, ties))) if start is None else np.array(start, dtype=float)
    value, grad, hess = _objective(design, summary, params, ties, ridge=ridge)
    inverse = np.linalg.inv(hess)
    last_size = np.inf
    for _ in range(max_iter):
        step = -np.einsum("bij,bj->bi", inverse, grad)
        size = np.abs(step).max()
        if size > last_size / 4:  # the kept Hessian no longer predicts the optimum well: refresh it
            value, grad, hess = _objective(design, summary, params, ties, ridge=ridge)
            inverse = np.linalg.inv(hess)
            step = -np.einsum("bij,bj->bi", inverse, grad)
            size = np.abs(step).max()
        if size < tol:
            return params + step
        decrease = -(grad * step).sum(axis=1)  # the Newton decrement: the predicted decrease is half of it
        scale = np.ones(batch)
        for _ in range(60):
            trial = params + scale[:, None] * step
            new_value, new_grad = _objective(design, summary, trial, ties, hessian=False, ridge=ridge)
            # Armijo, with room for rounding: at the optimum the change is below float precision of the sum.
            ok = new_value <= value - 1e-4 * scale * decrease + 1e-12 * np.abs(value)
            if ok.all():
                break
            scale = np.where(ok, scale, scale / 2)
        params, value, grad = trial, new_value, new_grad
        last_size = size if (scale == 1).all() else 0.0  # a damped step: refresh the Hessian next time
    return params


def sandwich(design: Design, weights: np.ndarray, spread: tuple | None, params: np.ndarray,
             ties: str, ridge: float | np.ndarray = RIDGE) -> np.ndarray:
    """Robust covariance (n, n) of the fitted parameters: H^-1 M H^-1, M the sum over battles of s s^T (H with the
    fit's `ridge`).

    weights (1, R, 3) as fitted; params (n,) the fit. A battle of weight c and outcome w has the score c L (p - w) in
    (d, eta) (half: L = [1, 0, 1/2] and p = (sigmoid(d), 1 - sigmoid(d), 0); Davidson: L = [[1/2, -1/2, 0], [0, 0,
    1]], p the model's probabilities), so a row contributes C mu mu^T - mu (L m)^T - (L m) mu^T + L Q L^T, mu = L p,
    from its battles' `spread` = (C, m, Q): C (R,) the sum of c^2, m (R, 3) of c^2 w, Q (R, 3, 3) of c^2 w w^T.
    spread=None: every row is one battle of weight 1 (C = w's sum, m = w, Q = w w^T). A weighted battle is one
    sampled unit (its weight counts twice in M, as when the bootstrap resamples battles with their weights).
    """
    theta, beta, eta = _split(design, params[None], ties)
    d = design.logits(theta, beta)[0]
    rows = weights[0]
    if ties == "half":
        lmat = np.array([[1.0, 0.0, 0.5]])
        mu = expit(d)[:, None]
    else:
        lmat = np.array([[0.5, -0.5, 0.0], [0.0, 0.0, 1.0]])
        half, e = d / 2, eta[0]
        top = np.maximum(np.abs(half), e)
        probs = np.stack([np.exp(half - top), np.exp(-half - top), np.exp(e - top)], axis=1)
        probs /= probs.sum(axis=1, keepdims=True)
        mu = probs @ lmat.T
    if spread is None:
        count2, first2 = rows.sum(axis=1), rows
        lm = first2 @ lmat.T  # (R, q)
        spread_l = lm[:, :, None] * lm[:, None, :]
    else:
        count2, first2, second2 = spread
        lm = first2 @ lmat.T
        spread_l = np.einsum("ij,rjk,lk->ril", lmat, second2, lmat)
    meat_rows = (count2[:, None, None] * mu[:, :, None] * mu[:, None, :] - mu[:, :, None] * lm[:, None, :]
                 - lm[:, :, None] * mu[:, None, :] + spread_l)
    zeros = np.zeros((1, len(d)))
    if ties == "half":
        second = (meat_rows[None, :, 0, 0], None, None)
    else:
        second = (meat_rows[None, :, 0, 0], meat_rows[None, :, 0, 1], meat_rows[None, :, 1, 1])
    _, meat = assemble(design, ties, (zeros, zeros), second)
    _, _, hess = objective(design, weights, params[None], ties, ridge=ridge)
    bread = np.linalg.inv(hess[0])
    return bread @ meat[0] @ bread
