"""Held-out battles under a global board, category boards and the per-prompt model: which predicts votes better?

    python bench/per_prompt_boards.py                    # all shared arena battles (sample + extra), 5 folds
    python bench/per_prompt_boards.py --rows 3000        # a quick run on the first rows

Battles: arena_sample.csv and arena_extra.csv together (16,174; the extra file was picked for a bias study and has
3% ties, read its README), self-battles dropped. Folds: 5, every battle of a prompt (same user text) in one fold.
Each fold's training battles give
    global        the plain Bradley-Terry board (ties half a win each way, as the leaderboard's default)
    categories    a plain board per built-in category (ratings/categories.py) with 300+ training battles; a held-out
                  battle is predicted by the board of its category with the fewest training battles (the most
                  specific), the global board when it is in none of them
    per-prompt    ratings/per_prompt.py on the categories alone, and on the categories plus 8 embedding components
                  (all-MiniLM-L6-v2), the ridge chosen inside the training battles by their own prompt-grouped CV
scored on the held-out battles by the cross-entropy of P(A wins) against 1 / 0 / 0.5 (A, B, tie) and by accuracy on
decisive battles; the constant 0.5 beside them (log 2). Prompt embeddings are cached under ~/.cache/arenapref (25 MB).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from arenapref.ratings.bradley_terry import Design, newton  # noqa: E402
from arenapref.ratings.categories import CATEGORIES  # noqa: E402
from arenapref.ratings.leaderboard import Votes, _index_models, load_battles  # noqa: E402
from arenapref.ratings.per_prompt import (  # noqa: E402
    battle_log_loss,
    embed_prompts,
    fit_prompt_board,
    prompt_folds,
)

DATA = ROOT.parent / "shared" / "data"
MIN_CATEGORY_BATTLES = 300


def battles_of(paths: list[Path], rows: int | None) -> pd.DataFrame:
    frames = [load_battles(p, prompt_categories=True, prompt_text=True) for p in paths]
    out = pd.concat([f.assign(model_a=f["model_a"].astype(str), model_b=f["model_b"].astype(str)) for f in frames],
                    ignore_index=True)
    return out.head(rows) if rows else out


def cached_embeddings(texts: np.ndarray) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(map(str, texts)).encode()).hexdigest()[:16]
    path = Path.home() / ".cache" / "arenapref" / f"prompt_embeddings-{digest}.npy"
    if path.exists():
        return np.load(path)
    start = time.time()
    vectors = embed_prompts(texts)
    print(f"embedded {len(texts)} prompts in {time.time() - start:.0f} s", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def plain_params(a, b, labels, m) -> np.ndarray:
    votes = Votes(a, b, m, labels, None)
    return newton(Design(votes.pairs, m), votes.weights[None], "half")[0]


def plain_loss(params, a, b, labels) -> np.ndarray:
    return battle_log_loss(params, a, b, np.zeros((len(a), 0)), labels, len(params), "half")


def accuracy(params_loss_d: np.ndarray, labels: np.ndarray) -> float:
    decisive = labels < 2
    return float(((params_loss_d[decisive] > 0) == (labels[decisive] == 0)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="first N battles only (a quick run)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--components", type=int, default=8)
    args = parser.parse_args()
    start = time.time()
    battles = battles_of([DATA / "arena_sample.csv", DATA / "arena_extra.csv"], args.rows)
    models, a, b = _index_models(battles)
    m = len(models)
    labels = battles["winner"].to_numpy()
    texts = battles["prompt_text"].to_numpy()
    bits = battles["prompt_categories"].to_numpy().astype(np.int64)
    embeddings = cached_embeddings(texts) if args.components else None
    fold = prompt_folds(texts, args.folds, key="arenapref-outer0")
    methods = ["prior", "global", "categories", "per_prompt_categories"] + (
        [f"per_prompt_categories_embedding{args.components}"] if args.components else [])
    loss = {k: np.zeros(len(battles)) for k in methods}
    margin = {k: np.zeros(len(battles)) for k in methods}
    ridges: dict[str, list] = {k: [] for k in methods if k.startswith("per_prompt")}
    for f in range(args.folds):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        loss["prior"][test] = np.log(2)
        glob = plain_params(a[train], b[train], labels[train], m)
        loss["global"][test] = plain_loss(glob, a[test], b[test], labels[test])
        margin["global"][test] = glob[a[test]] - glob[b[test]]
        # category boards: the most specific category with enough training battles, else global
        chosen = np.full(len(test), -1)
        sizes = {j: int(((bits[train] >> j) & 1).sum()) for j in range(len(CATEGORIES))}
        for j in sorted(sizes, key=lambda j: -sizes[j]):  # larger first, so the smallest flagged one wins
            if sizes[j] >= MIN_CATEGORY_BATTLES:
                chosen[((bits[test] >> j) & 1) == 1] = j
        cat_margin = margin["global"][test].copy()
        cat_loss = loss["global"][test].copy()
        for j in set(chosen[chosen >= 0]):
            in_cat = train[((bits[train] >> j) & 1) == 1]
            params = plain_params(a[in_cat], b[in_cat], labels[in_cat], m)
            rows = chosen == j
            cat_loss[rows] = plain_loss(params, a[test][rows], b[test][rows], labels[test][rows])
            cat_margin[rows] = params[a[test][rows]] - params[b[test][rows]]
        loss["categories"][test], margin["categories"][test] = cat_loss, cat_margin
        for name, components in [("per_prompt_categories", 0)] + (
                [(f"per_prompt_categories_embedding{args.components}", args.components)] if args.components else []):
            part = battles.iloc[train].reset_index(drop=True)
            board = fit_prompt_board(part, components=components,
                                     embeddings=None if embeddings is None else embeddings[train])
            ridges[name].append(board.ridge)
            x = board.features.transform(bits[test], None if not components else embeddings[test])
            index = {str(name_): i for i, name_ in enumerate(board.models)}
            # models never seen in this fold's training battles: strength 0 (the ridge's mean), no prompt weights
            strengths = np.zeros((len(test), m))
            full = board.strengths(x)
            for i, model in enumerate(models):
                if model in index:
                    strengths[:, i] = full[:, index[model]]
            d = strengths[np.arange(len(test)), a[test]] - strengths[np.arange(len(test)), b[test]]
            margin[name][test] = d
            score = np.where(labels[test] == 0, 1.0, np.where(labels[test] == 1, 0.0, 0.5))
            loss[name][test] = np.logaddexp(0, -d) * score + np.logaddexp(0, d) * (1 - score)
        print(f"fold {f + 1}/{args.folds}: " + ", ".join(f"{k} {loss[k][test].mean():.4f}" for k in methods)
              + f" ({time.time() - start:.0f} s)", file=sys.stderr)
    per_fold = {k: [float(loss[k][fold == f].mean()) for f in range(args.folds)] for k in methods}
    result = {"battles": int(len(battles)), "models": int(m), "folds": args.folds,
              "ties": float((labels == 2).mean()),
              "held_out_loss": {k: float(loss[k].mean()) for k in methods},
              "held_out_loss_fold_sd": {k: float(np.std(per_fold[k], ddof=1)) for k in methods},
              "decisive_accuracy": {k: accuracy(margin[k], labels) for k in methods if k != "prior"},
              "gain_over_global": {k: float(loss["global"].mean() - loss[k].mean()) for k in methods},
              "paired_gain_se": {k: float(np.std(loss["global"] - loss[k], ddof=1) / np.sqrt(len(battles)))
                                 for k in methods if k not in ("prior", "global")},
              "ridge_chosen_per_fold": ridges, "seconds": round(time.time() - start, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
