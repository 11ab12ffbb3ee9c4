"""Per-prompt ratings: what LMArena's Prompt-to-Leaderboard does with an LLM, here with what runs on a CPU. A
contextual Bradley-Terry model whose ratings depend on the prompt:

    strength_m(x) = theta_m + w_m . x

x is a prompt's features: its built-in categories (categories.py, 0 or 1) and the first principal components of its
sentence embedding (all-MiniLM-L6-v2 over the user turns, mean-pooled, normalised; the axes those of the training
prompts), each standardised over the training battles. The fit is the leaderboards' Newton solver
(bradley_terry.newton) with the battles as rows and M x K covariate columns (a battle's x under its model a's
columns, -x under its model b's; sparse), the w penalised by a ridge chosen by cross-validation with each prompt's
battles kept in one fold, the thetas by the leaderboards' negligible ridge: with every feature 0 the fit is the
global board. Intervals: the sandwich covariance of the fit, as `--ci sandwich` boards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from arenapref.data.tables import write_text_atomic
from arenapref.errors import DataError
from arenapref.ratings.bradley_terry import RIDGE, TIES, Design, newton, sandwich
from arenapref.ratings.categories import CATEGORIES, category_bits
from arenapref.ratings.leaderboard import (
    ELO_PER_NATURAL,
    INITIAL,
    Votes,
    _index_models,
    _outcome_arrays,
    normal_quantile,
    upper_bound_ranks,
)

COMPONENTS = 8  # embedding components kept; 0: the categories alone
RIDGE_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)  # on standardised features, summed over battles
FOLDS = 5
EMBED_MAX_TOKENS = 128
FORMAT = 1


@lru_cache(maxsize=1)
def _encoder():
    """all-MiniLM-L6-v2's tokenizer and encoder, loaded once per process (route() is called prompt by prompt)."""
    from transformers import AutoModel, AutoTokenizer

    from arenapref.models.loading import DEFAULT_BACKBONE, local_backbone, pretrained

    source = local_backbone(DEFAULT_BACKBONE)
    return AutoTokenizer.from_pretrained(source), pretrained(AutoModel, source).eval()


def embed_prompts(texts, batch_size: int = 64) -> np.ndarray:
    """(N, 384) float32 unit vectors: all-MiniLM-L6-v2 mean-pooled over each text's first 128 tokens (sorted by
    length into batches, so padding costs little)."""
    import torch

    from arenapref.models.pooling import masked_mean

    texts = [str(t) for t in texts]
    tokenizer, model = _encoder()
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokenizer([texts[i] for i in rows], truncation=True, max_length=EMBED_MAX_TOKENS, padding=True,
                              return_tensors="pt")
            pooled = masked_mean(model(**batch).last_hidden_state, batch["attention_mask"])
            out[rows] = torch.nn.functional.normalize(pooled, dim=1).numpy()
    return out


def category_matrix(bits: np.ndarray) -> np.ndarray:
    """(N,) category bit masks -> (N, len(CATEGORIES)) 0/1."""
    bits = np.asarray(bits, dtype=np.int64)
    return np.stack([(bits >> j) & 1 for j in range(len(CATEGORIES))], axis=1).astype(float)


@dataclass
class PromptFeatures:
    """The map from a prompt to its standardised features: category flags, then `components` projections of the
    embedding on the training prompts' principal axes. Fitted on training prompts (fit), applied to any (transform)."""

    components: int
    names: list[str] = field(default_factory=list)
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    embed_mean: np.ndarray | None = None
    axes: np.ndarray | None = None

    def raw(self, categories: np.ndarray, embeddings: np.ndarray | None) -> np.ndarray:
        blocks = [category_matrix(categories)]
        if self.components:
            blocks.append((embeddings - self.embed_mean) @ self.axes.T)
        return np.hstack(blocks)

    @classmethod
    def fit(cls, categories: np.ndarray, embeddings: np.ndarray | None, components: int = COMPONENTS,
            ) -> PromptFeatures:
        components = components if embeddings is not None else 0
        features = cls(components, list(CATEGORIES) + [f"embedding_{j + 1}" for j in range(components)])
        if components:
            features.embed_mean = embeddings.mean(axis=0)
            # principal axes of the centred training embeddings (rows: axes)
            _, _, vt = np.linalg.svd(embeddings - features.embed_mean, full_matrices=False)
            features.axes = vt[:components]
        raw = features.raw(categories, embeddings)
        features.mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        features.scale = np.where(std > 1e-9, std, np.inf)  # a constant feature (no prompt in a category) stays 0
        return features

    def transform(self, categories: np.ndarray, embeddings: np.ndarray | None) -> np.ndarray:
        return (self.raw(categories, embeddings) - self.mean) / self.scale

    def of_prompts(self, prompts: list[str]) -> np.ndarray:
        """(N, K) features of prompt texts (one user turn each)."""
        import pyarrow as pa

        cells = pa.array([json.dumps([p]) for p in prompts])
        return self.transform(category_bits(cells, "prompt"), embed_prompts(prompts) if self.components else None)

    def to_json(self) -> dict:
        return {"components": self.components, "names": self.names, "mean": self.mean.tolist(),
                "scale": [s if np.isfinite(s) else None for s in self.scale.tolist()],
                "embed_mean": None if self.embed_mean is None else self.embed_mean.tolist(),
                "axes": None if self.axes is None else self.axes.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> PromptFeatures:
        scale = np.array([np.inf if s is None else s for s in data["scale"]], dtype=float)
        arrays = {k: None if data[k] is None else np.asarray(data[k], dtype=float) for k in ("embed_mean", "axes")}
        return cls(int(data["components"]), list(data["names"]), np.asarray(data["mean"], dtype=float), scale,
                   **arrays)


def interaction_columns(a: np.ndarray, b: np.ndarray, x: np.ndarray, n_models: int) -> sparse.csr_matrix:
    """(N, M*K): battle r's features x_r under model a_r's K columns and -x_r under b_r's."""
    n, k = x.shape
    rows = np.repeat(np.arange(n), 2 * k)
    cols = np.concatenate([a[:, None] * k + np.arange(k), b[:, None] * k + np.arange(k)], axis=1).ravel()
    vals = np.concatenate([x, -x], axis=1).ravel()
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n_models * k))


def _fit_params(votes: Votes, x: np.ndarray, ridge: float, ties: str, start: np.ndarray | None = None):
    m, k = votes.n_models, x.shape[1]
    design = Design(votes.pairs, m, votes.pair_of_battle, interaction_columns(votes.a, votes.b, x, m))
    penalty = np.r_[np.full(m, RIDGE), np.full(m * k, ridge), np.full(int(ties == "davidson"), RIDGE)]
    weights = votes.battle_weights()
    params = newton(design, weights[None], ties, start=None if start is None else start[None], ridge=penalty)[0]
    return params, design, weights, penalty


def battle_log_loss(params: np.ndarray, a, b, x: np.ndarray, labels: np.ndarray, n_models: int, ties: str
                    ) -> np.ndarray:
    """(N,) held-out loss per battle: half ties, the cross-entropy of P(A) against 1 / 0 / 0.5; Davidson, -log of
    the voted outcome's probability."""
    m, k = n_models, x.shape[1]
    theta, w = params[:m], params[m:m + m * k].reshape(m, k)
    d = theta[a] - theta[b] + np.einsum("nk,nk->n", w[a] - w[b], x)
    if ties == "half":
        score = np.where(labels == 0, 1.0, np.where(labels == 1, 0.0, 0.5))
        return np.logaddexp(0, -d) * score + np.logaddexp(0, d) * (1 - score)
    logits = np.stack([d / 2, -d / 2, np.full_like(d, params[-1])], axis=1)
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return -logp[np.arange(len(d)), labels]


def prompt_folds(texts: np.ndarray, folds: int, key: str = "arenapref-folds0") -> np.ndarray:
    """(N,) fold of each battle: every battle of a prompt (same user text) in the same fold. Another 16-character
    `key` gives other folds (an outer cross-validation around the fit's own)."""
    hashed = pd.util.hash_array(np.asarray(texts, dtype=object), hash_key=key)
    return (hashed % np.uint64(folds)).astype(np.int64)


@dataclass
class PromptBoard:
    """A fitted per-prompt model: `models`, natural strengths `theta` (M,) and per-model feature weights `w` (M, K),
    the `features` map, the `ridge` used and the cross-validation table that chose it, the battles per model, and
    (after a fit, not saved) the sandwich covariance of (theta, w) for intervals."""

    models: np.ndarray
    theta: np.ndarray
    w: np.ndarray
    features: PromptFeatures
    ridge: float
    ties: str
    battles: np.ndarray
    cv: list[dict] = field(default_factory=list)
    cov: np.ndarray | None = None

    def strengths(self, x: np.ndarray) -> np.ndarray:
        """(N, K) features -> (N, M) natural strengths."""
        return self.theta + x @ self.w.T

    def board(self, prompt: str, level: float = 0.95, x: np.ndarray | None = None) -> pd.DataFrame:
        """The leaderboard for one prompt: model, rating (Elo, mean 1000), se, interval, Rank (UB), battles."""
        x = self.features.of_prompts([prompt])[0] if x is None else x
        m, k = len(self.models), len(x)
        elo = self.strengths(x[None])[0] * ELO_PER_NATURAL
        ratings = elo - elo.mean() + INITIAL
        se = np.full(m, np.nan)
        if self.cov is not None:
            jac = np.zeros((m, self.cov.shape[0]))
            jac[:, :m] = np.eye(m)
            jac[np.repeat(np.arange(m), k), m + np.arange(m * k)] = np.tile(x, m)
            jac -= jac.mean(axis=0)  # ratings are read against the mean model
            se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", jac, self.cov, jac), 0)) * ELO_PER_NATURAL
        z = normal_quantile(level)
        table = pd.DataFrame({"model": self.models, "rating": ratings, "se": se, "ci_low": ratings - z * se,
                              "ci_high": ratings + z * se, "battles": self.battles})
        table["rank_ub"] = upper_bound_ranks(ratings, table["ci_low"].to_numpy(), table["ci_high"].to_numpy())
        return table.sort_values(["rating", "model"], ascending=[False, True]).reset_index(drop=True)

    def route(self, prompt: str, candidates: list[str] | None = None) -> str:
        """The model with the highest rating for this prompt (among `candidates` when given)."""
        ratings = self.strengths(self.features.of_prompts([prompt]))[0]
        names = list(self.models)
        if candidates:
            unknown = [c for c in candidates if c not in names]
            if unknown:
                raise DataError(f"route: unknown model(s) {', '.join(unknown)}; the board rates {len(names)} models")
            pick = [names.index(c) for c in candidates]
            return names[pick[int(np.argmax(ratings[pick]))]]
        return names[int(np.argmax(ratings))]

    def save(self, path: Path) -> None:
        data = {"format": FORMAT, "models": [str(m) for m in self.models], "theta": self.theta.tolist(),
                "w": self.w.tolist(), "ridge": self.ridge, "ties": self.ties, "battles": self.battles.tolist(),
                "cv": self.cv, "features": self.features.to_json()}
        write_text_atomic(json.dumps(data) + "\n", path)

    @classmethod
    def load(cls, path) -> PromptBoard:
        path = Path(path)
        if path.is_dir():
            path = path / "per_prompt.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(np.array(data["models"], dtype=object), np.asarray(data["theta"], dtype=float),
                       np.asarray(data["w"], dtype=float).reshape(len(data["models"]), -1),
                       PromptFeatures.from_json(data["features"]), float(data["ridge"]), data["ties"],
                       np.asarray(data["battles"], dtype=int), data.get("cv", []))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a per-prompt model ({str(exc).splitlines()[0][:120]}); write one with "
                            "`arenapref leaderboard --per-prompt TEXT --output DIR`") from None


def fit_prompt_board(battles: pd.DataFrame, outcomes=None, components: int = COMPONENTS, ridge: float | None = None,
                     ties: str = "half", folds: int = FOLDS, embeddings: np.ndarray | None = None,
                     grid: tuple[float, ...] = RIDGE_GRID, progress=None) -> PromptBoard:
    """Fit the per-prompt model on battles read by load_battles(prompt_categories=True, prompt_text=True when
    `components`): votes from `outcomes` ((N,) labels or (N, 3) weights; default the `winner` column). `ridge` None:
    the grid value with the lowest held-out loss over `folds` prompt-grouped folds (battle_log_loss)."""
    if ties not in TIES:
        raise DataError(f"ties {ties!r}: expected half or davidson")
    if "prompt_categories" not in battles.columns:
        raise DataError("per-prompt ratings need the prompts' categories; load the battles with "
                        "load_battles(prompt_categories=True)")
    models, a, b = _index_models(battles)
    labels, soft = _outcome_arrays(battles["winner"].to_numpy() if outcomes is None else outcomes, len(battles))
    if labels is None:
        raise DataError("per-prompt ratings are fitted on votes (labels 0 / 1 / 2), not on soft predictions")
    bits = battles["prompt_categories"].to_numpy()
    if components and embeddings is None:
        if "prompt_text" not in battles.columns:
            raise DataError("per-prompt ratings with embedding components need the prompts' text; load the battles "
                            "with load_battles(prompt_text=True), or pass components=0")
        embeddings = embed_prompts(battles["prompt_text"].to_numpy())
    if not components:
        embeddings = None
    m = len(models)
    cv = []
    if ridge is None:
        texts = battles["prompt_text"].to_numpy() if "prompt_text" in battles.columns else battles["id"].to_numpy()
        fold = prompt_folds(texts, folds)
        losses = np.zeros((folds, len(grid)))
        for f in range(folds):
            train, test = fold != f, fold == f
            feats = PromptFeatures.fit(bits[train], None if embeddings is None else embeddings[train], components)
            x_train = feats.transform(bits[train], None if embeddings is None else embeddings[train])
            x_test = feats.transform(bits[test], None if embeddings is None else embeddings[test])
            votes = Votes(a[train], b[train], m, labels[train], None)
            start = None
            for g, value in sorted(enumerate(grid), key=lambda t: -t[1]):  # strongest ridge first: warm starts
                start, *_ = _fit_params(votes, x_train, value, ties, start)
                losses[f, g] = battle_log_loss(start, a[test], b[test], x_test, labels[test], m, ties).sum()
            if progress is not None:
                progress(1)
        n = np.bincount(fold, minlength=folds).sum()
        cv = [{"ridge": value, "held_out_loss": float(losses[:, g].sum() / n)} for g, value in enumerate(grid)]
        ridge = float(grid[int(np.argmin(losses.sum(axis=0)))])
    features = PromptFeatures.fit(bits, embeddings, components)
    x = features.transform(bits, embeddings)
    votes = Votes(a, b, m, labels, None)
    params, design, weights, penalty = _fit_params(votes, x, ridge, ties)
    k = x.shape[1]
    cov = sandwich(design, weights[None], None, params, ties, ridge=penalty)[:m + m * k, :m + m * k]
    counts = np.bincount(a, minlength=m) + np.bincount(b, minlength=m)
    return PromptBoard(models, params[:m], params[m:m + m * k].reshape(m, k), features, float(ridge), ties, counts,
                       cv, cov)
