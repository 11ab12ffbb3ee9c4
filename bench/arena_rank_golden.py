"""Golden numbers from lmarena's arena-rank for tests/test_leaderboard.py: run once, in a virtual environment of its
own (arena-rank pins jax and numpy; it is never a dependency of arenapref), and commit the two files it writes.

    python -m venv /tmp/arvenv && /tmp/arvenv/bin/pip install arena-rank==0.1.1
    /tmp/arvenv/bin/python bench/arena_rank_golden.py

Writes tests/data/golden_battles.csv (a fixed, simulated battle file: 3,000 battles among 8 models in LMArena's
`winner` format, both_bad votes included, the four style counts of each response, a per-battle weight) and
tests/data/arena_rank_golden.json (arena-rank's ratings, sandwich intervals and style coefficients on it).

Settings that make arena-rank's fits the model arenapref fits (`rate(..., ties="half", ci="sandwich")`):
- ties: arena-rank's outcome map scores a tie (and a both_bad vote) 0.5, the half-win likelihood;
- plain board: `PairDataset.from_pandas(reweighted=False)` (arena-rank's default); weighted board: one row per
  battle with its weight (counts 1, weights and opt_weights the battle weight) and `hessian_reg=1e-5 * battles`,
  the ridge arena-rank itself uses on unweighted data (at its bare 1e-5 for weighted data, rounding along the
  ratings' free direction, their common shift, moves its intervals by 2%);
- style: `ContextualPairDataset.from_pandas(reweighted=False)` (its default, True, re-weights pairs by inverse
  frequency) and `ContextualBradleyTerry(reg=0)` (its default, 1.0, is an L2 penalty on the style coefficients),
  fed arenapref's covariates before standardising, (f_a - f_b) / (f_a + f_b) per feature (0 when both are 0), which
  it standardises the same way (`normalize_features=True`);
- what remains different: its solver (L-BFGS to gtol 1e-9 against Newton), its small ridge (1e-5 on the Hessian,
  times the battles for the unweighted plain board) against arenapref's (1e-3 on the squared strengths).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data"
FEATURES = ("tokens", "headers", "lists", "bold")


def simulate(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    names = [f"model-{c}" for c in "abcdefgh"]
    elo = np.array([1180, 1120, 1080, 1040, 1000, 960, 900, 850.0])
    verbosity = rng.normal(0, 0.6, len(names))
    a = rng.integers(0, len(names), n)
    b = (a + rng.integers(1, len(names), n)) % len(names)
    counts = {}
    for side, model in (("a", a), ("b", b)):
        counts[f"tokens_{side}"] = np.exp(rng.normal(5.5 + verbosity[model], 0.7)).astype(int) + 1
        counts[f"headers_{side}"] = rng.poisson(0.6, n)
        counts[f"lists_{side}"] = rng.poisson(2.0 + verbosity[model].clip(0), n)
        counts[f"bold_{side}"] = rng.poisson(1.0, n)
    ratio = (counts["tokens_a"] - counts["tokens_b"]) / (counts["tokens_a"] + counts["tokens_b"])
    d = (elo[a] - elo[b]) * math.log(10) / 400 + 0.8 * ratio
    z = np.stack([d / 2, -d / 2, np.full(n, math.log(0.7))], axis=1)
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    outcome = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 2)
    winner = np.array(["model_a", "model_b", "tie"], dtype=object)[outcome]
    winner[(outcome == 2) & (rng.random(n) < 0.3)] = "both_bad"  # LMArena's both-bad votes, a tie for both
    frame = pd.DataFrame({"id": [f"g{i}" for i in range(n)], "model_a": np.array(names)[a],
                          "model_b": np.array(names)[b], "winner": winner, **counts,
                          "weight": rng.choice([0.5, 1.0, 1.0, 2.0, 3.0], n)})
    return frame


def ratios(frame: pd.DataFrame) -> np.ndarray:
    out = []
    for name in FEATURES:
        fa, fb = frame[f"{name}_a"].to_numpy(float), frame[f"{name}_b"].to_numpy(float)
        total = fa + fb
        out.append(np.where(total > 0, (fa - fb) / np.where(total > 0, total, 1), 0.0))
    return np.stack(out, axis=1)


def main() -> None:
    import jax.numpy as jnp
    from arena_rank.models.bradley_terry import BradleyTerry
    from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
    from arena_rank.utils.data_utils import (
        ContextualPairDataset,
        PairDataset,
        default_outcome_map,
        get_matchups_and_competitors,
        get_outcomes,
    )

    frame = simulate()
    OUT.mkdir(parents=True, exist_ok=True)
    frame.to_csv(OUT / "golden_battles.csv", index=False)

    def board(result):
        return {name: {"rating": float(r), "ci_low": float(lo), "ci_high": float(hi)}
                for name, r, lo, hi in zip(result["competitors"], result["ratings"], result["rating_lower"],
                                           result["rating_upper"])}

    plain_data = PairDataset.from_pandas(frame, reweighted=False)
    plain = BradleyTerry(len(plain_data.competitors)).compute_ratings_and_cis(plain_data, ci_method="sandwich")

    matchups, competitors = get_matchups_and_competitors(frame)
    weights = jnp.array(frame["weight"].to_numpy(float))
    weighted_data = PairDataset(competitors=competitors, pairs=matchups,
                                outcomes=get_outcomes(frame, "winner", default_outcome_map),
                                counts=jnp.ones(len(frame)), weights=weights, opt_weights=weights)
    # Its Hessian ridge as it scales it for unweighted data (times the battles): at the bare 1e-5 its weighted
    # intervals are off by 2% from rounding along the ratings' free direction (their common shift).
    weighted = BradleyTerry(len(competitors), hessian_reg=1e-5 * len(frame)).compute_ratings_and_cis(
        weighted_data, ci_method="sandwich")

    styled_frame = frame.assign(**{f"x_{name}": ratios(frame)[:, j] for j, name in enumerate(FEATURES)})
    style_data = ContextualPairDataset.from_pandas(styled_frame, [f"x_{name}" for name in FEATURES],
                                                   reweighted=False, normalize_features=True)
    model = ContextualBradleyTerry(len(style_data.competitors), len(FEATURES), reg=0.0)
    styled = model.compute_ratings_and_cis(style_data, ci_method="sandwich")

    from importlib.metadata import version

    golden = {"arena_rank": version("arena-rank"), "battles": len(frame), "ties": "half", "ci": "sandwich 95%",
              "plain": board(plain), "weighted": board(weighted), "style": board(styled),
              "style_coefficients": {name: float(c) for name, c in zip(FEATURES, styled["coeffs"])}}
    (OUT / "arena_rank_golden.json").write_text(json.dumps(golden, indent=2) + "\n")
    print(json.dumps({"battles": len(frame), "files": ["tests/data/golden_battles.csv",
                                                      "tests/data/arena_rank_golden.json"]}))


if __name__ == "__main__":
    main()
