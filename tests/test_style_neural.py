"""The style term of the neural heads (dual tower and cross-encoder 3-way heads, and so the hybrid): the style term
alone is the leaderboard's style model, `controlled` ignores style and length side features and leaves the tie
alone, a trained model's two modes differ by exactly its saved style term, and the flags refuse what has no style
term."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from arenapref.config import TrainConfig
from arenapref.data.features import SHARED_COUNT, SIDE_COUNT, SIDE_FEATURES, head_features, swap_features
from arenapref.data.tables import load_frame
from arenapref.errors import DataError
from arenapref.inference.backend import model_features
from arenapref.inference.predictor import Predictor
from arenapref.models.cross_encoder import CrossEncoderModel
from arenapref.models.dual_tower import DualTowerModel, set_style_term
from arenapref.models.style_term import StyleTerm, decisive_style, fit_style_term, style_ratios
from arenapref.training.probe import ProbeData, StyleProbe
from conftest import run_cli


@pytest.fixture(scope="module")
def sample(arena_csv) -> pd.DataFrame:
    return load_frame(arena_csv, require_labels=True)


def _styled(model_cls, tiny_deberta, **kwargs):
    torch.manual_seed(0)
    model = model_cls.from_backbone(str(tiny_deberta), side_features=SIDE_COUNT, shared_features=SHARED_COUNT,
                                    style_term=True, **kwargs).eval()
    set_style_term(model, StyleTerm(coef=np.array([0.5, -0.2, 0.8, 0.1]), se=np.zeros(4),
                                    scale=np.array([0.4, 0.2, 0.5, 0.3]), rows=1))
    return model


def test_style_term_alone_is_the_leaderboards_after_alternating_with_a_head_that_reads_nothing(sample):
    """Pooled vectors and side features constant: the head can only set the tie rate, its A-vs-B logit stays 0, and
    the alternation ends where the style term alone started: the leaderboard's style model
    (tests/test_style_control.py checks fit_style_term against rate())."""
    labels = sample["label"].to_numpy()
    ratios = style_ratios(sample)
    alone = fit_style_term(*decisive_style(ratios, labels))
    data = ProbeData("pair", np.ones((len(sample), 2, 8)), labels, np.zeros((len(sample), 2 * SIDE_COUNT + 3)))
    probe = StyleProbe(data, ratios)
    setting = {"C": 0.1, "scale": 1.0}
    (W, b), term = probe.fit({"tie": setting, "ab": setting}, alone, log=lambda *a: None)
    assert np.abs(W[0] - W[1]).max() < 1e-9 and b[0] == b[1]
    tie_rate = probe.predict((W, b), np.arange(len(sample)), None)[:, 2]
    np.testing.assert_allclose(tie_rate, np.mean(labels == 2), atol=1e-4)
    np.testing.assert_allclose(term.coef, alone.coef, atol=1e-6)
    np.testing.assert_allclose(term.se, alone.se, rtol=1e-4)
    assert np.abs(alone.coef).max() > 0.1


@pytest.mark.parametrize("family", ["dual-tower", "cross-encoder"])
def test_controlled_head_ignores_style_and_length_features(family, sample, tiny_deberta):
    """Same text, same content features; the style differences and the length / markdown side features changed
    (as when the longer answer is swapped): controlled logits do not move; as voted, log(P(A) / P(B)) moves by
    exactly the style term t and P(tie) not at all."""
    model = _styled(DualTowerModel if family == "dual-tower" else CrossEncoderModel, tiny_deberta)
    rows = sample.head(6).reset_index(drop=True)
    features = torch.as_tensor(model_features(model, rows))
    assert features.shape[1] == 2 * SIDE_COUNT + SHARED_COUNT + 4
    changed = features.clone()
    changed[:, 2 * SIDE_COUNT + SHARED_COUNT:] *= -1                                   # which answer is longer
    for name in ("chars", "words", "tokens", "lines", "headers", "bullets", "bold"):  # the style side features
        i = SIDE_FEATURES.index(name)
        changed[:, [i, SIDE_COUNT + i]] = changed[:, [SIDE_COUNT + i, i]]
    controlled = features.clone()
    controlled[:, 2 * SIDE_COUNT + SHARED_COUNT:] = 0
    controlled_changed = changed.clone()
    controlled_changed[:, 2 * SIDE_COUNT + SHARED_COUNT:] = 0

    def logits(f):
        with torch.no_grad():
            if family == "dual-tower":
                pooled = torch.randn(len(rows), 2, model.config.hidden, generator=torch.Generator().manual_seed(1))
                return model.head_logits(pooled, f)[0]
            ids = torch.randint(5, 50, (len(rows), 12), generator=torch.Generator().manual_seed(1))
            return model(input_ids=ids, attention_mask=torch.ones_like(ids), features=f).logits

    torch.testing.assert_close(logits(controlled), logits(controlled_changed), atol=1e-6, rtol=0)
    ratios = style_ratios(rows)
    t = (ratios / model.style_scale.numpy()) @ model.style_coef.numpy()
    voted, free = logits(features).numpy(), logits(controlled).numpy()
    np.testing.assert_allclose((voted[:, 0] - voted[:, 1]) - (free[:, 0] - free[:, 1]), t, atol=1e-5)
    np.testing.assert_allclose(voted[:, 2], free[:, 2], atol=1e-6)
    np.testing.assert_allclose(np.exp(voted).sum(1), 1, atol=1e-5)  # log-probabilities
    assert np.abs(t).max() > 0.05
    # A and B exchanged: the style differences change sign with the sides (data/features.swap_features).
    np.testing.assert_allclose(swap_features(model_features(model, rows))[:, -4:], -ratios, atol=1e-6)


@pytest.fixture(scope="module")
def style_dual_tower(tmp_path_factory, small_csv, arena_csv, tiny_deberta) -> str:
    """A tiny dual tower with a style term and --extra rows: linear probe, then fine-tuning (seconds)."""
    folder = tmp_path_factory.mktemp("style_dual_tower")
    extra = folder / "extra.csv"
    pd.read_csv(arena_csv, dtype=str, keep_default_na=False).iloc[400:520].to_csv(extra, index=False)
    out = folder / "model"
    train = ["train", "--data", small_csv, "--extra", extra, "--output", out, "--model", "dual-tower", "--style-term",
             "--backbone", tiny_deberta, "--max-length", 48, "--epochs", 1, "--batch-size", 8, "--eval-steps", 4,
             "--seed", 1]
    first = run_cli(*train, env={"ARENAPREF_CACHE": str(folder / "cache")})
    assert "decisive --extra rows ready" in first.stdout + first.stderr
    assert len(list((folder / "cache" / "pooled").glob("*.npz"))) == 1  # the extra rows' vectors, kept
    return str(out)


def test_trained_dual_tower_modes_differ_by_its_saved_style_term(style_dual_tower, sample):
    meta = json.loads((Path(style_dual_tower) / "arenapref.json").read_text())
    term = StyleTerm.from_meta(meta["style_term"])
    assert [r["feature"] for r in meta["style_term"]["coefficients"]] == ["tokens", "headers", "lists", "bold"]
    assert "alternated with the linear probe" in meta["style_term"]["fitted"]
    assert 0 < meta["probe"]["ab"]["extra_rows"] < 120  # the decisive ones of the 120 --extra rows
    judge = Predictor.from_pretrained(style_dual_tower)
    assert judge.has_style_term and judge.style_coefficients() == meta["style_term"]["coefficients"]
    rows = sample.iloc[200:260].reset_index(drop=True)
    voted, controlled = judge.predict_proba(rows), judge.predict_proba(rows, style="controlled")
    # Logits / temperature: log(P(A) / P(B)) moves by t / T; the model's P(tie) (before temperature) not at all.
    shift = np.log(voted[:, 0] / voted[:, 1]) - np.log(controlled[:, 0] / controlled[:, 1])
    np.testing.assert_allclose(shift, term.logit(style_ratios(rows)) / judge.temperature, atol=1e-4)
    raw = [judge.backend.predict_logits(rows, style=mode)[0] for mode in ("as-voted", "controlled")]
    np.testing.assert_allclose(raw[0][:, 2], raw[1][:, 2], atol=1e-5)
    # Swap TTA and both orders go through the same features: controlled stays free of the term there too.
    swapped = judge.predict_proba(rows, tta="swap", style="controlled")
    assert np.all(np.isfinite(swapped)) and not np.allclose(swapped, judge.predict_proba(rows, tta="swap"))


def test_hybrid_with_style_terms_in_both_parts(tmp_path, small_csv, tiny_deberta, sample):
    out = tmp_path / "hybrid"
    run_cli("train", "--data", small_csv, "--output", out, "--style-term", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 0)
    judge = Predictor.from_pretrained(out)
    assert judge.has_style_term
    rows = judge.style_coefficients()
    assert [r["part"] for r in rows] == ["neural"] * 4 + ["gbdt"] * 4
    held = tmp_path / "held.csv"
    pd.read_csv(small_csv, dtype=str, keep_default_na=False).head(40).to_csv(held, index=False)
    table = run_cli("evaluate", "--model", out, "--data", held, "--style", "controlled").stdout
    assert "left out (--style controlled)" in table and "neural" in table and "gbdt" in table
    frame = sample.head(30)
    blend = sum(w * part.predict_proba(frame, style="controlled") for w, part in judge.backend.parts)
    np.testing.assert_allclose(judge.predict_proba(frame, style="controlled"), blend, atol=1e-9)


def test_style_term_refusals(tmp_path, small_csv):
    base = {"data": str(small_csv), "output": str(tmp_path / "m")}
    with pytest.raises(DataError, match="3-way head that reads side features"):
        TrainConfig(**base, model="dual-tower", style_term=True, objective="rank").validate()
    with pytest.raises(DataError, match="3-way head that reads side features"):
        TrainConfig(**base, model="cross-encoder", style_term=True, head_features=False).validate()
    with pytest.raises(DataError, match="--style-term with --extra"):
        TrainConfig(**base, model="dual-tower", style_term=True, extra=[str(small_csv)], probe=False).validate()
    TrainConfig(**base, model="dual-tower", style_term=True, extra=[str(small_csv)]).validate()
    with pytest.raises(DataError, match="--style-term does not apply"):
        TrainConfig(**base, model="llm", style_term=True).validate()
    with pytest.raises(DataError, match="--hybrid-neural llm has no style term"):
        TrainConfig(**base, model="hybrid", hybrid_neural="llm", style_term=True).validate()
    TrainConfig(**base, model="hybrid", style_term=True, extra=[str(small_csv)]).validate()
    assert head_features(load_frame(small_csv).head(3)).shape[1] == 2 * SIDE_COUNT + SHARED_COUNT


@pytest.mark.slow
def test_as_voted_grouped_cv_log_loss_of_the_probed_head_stays_near_todays(sample):
    """The dual tower's linear probe on frozen all-MiniLM-L6-v2 vectors (the hybrid's neural part before
    fine-tuning) on the arena sample's 5 grouped folds (seed 42, `arenapref cv`'s), C and pooled weight chosen by the
    probe's own grouped CV as `train` does, without --extra rows: the style-term head costs at most 0.012 of
    out-of-fold log loss as voted (measured: 1.0324 against 1.0238; with arena_extra's decisive rows teaching its
    A-vs-B logit, 1.0250: bench/style_control.py, docs/style-control.md). About two minutes: one encoding pass."""
    from arenapref.data.features import feature_stats, standardize
    from arenapref.data.split import prompt_groups
    from arenapref.data.text import Renderer, TextSettings, encode_rows
    from arenapref.evaluation.metrics import log_loss, softmax
    from arenapref.inference.backend import pooled_sequences
    from arenapref.models.families import DUAL_TOWER
    from arenapref.training.cv import grouped_folds
    from arenapref.training.probe import choose_probe

    cfg = TrainConfig(data="-", output="-", model="dual-tower", style_term=True)
    tokenizer = DUAL_TOWER.tokenizer(cfg.backbone)
    model = DUAL_TOWER.build(cfg, tokenizer).eval()
    rows = encode_rows(Renderer(tokenizer, TextSettings(max_length=128)), "pair", sample)
    with torch.no_grad():
        pooled = pooled_sequences(model, [a for a, _ in rows] + [b for _, b in rows], tokenizer.pad_token_id, 16384)
    pooled = pooled.numpy().reshape(2, len(rows), -1).transpose(1, 0, 2)
    features, labels, ratios = head_features(sample), sample["label"].to_numpy(), style_ratios(sample)
    oof = {"today": np.zeros((len(sample), 3)), "style_term": np.zeros((len(sample), 3)),
           "controlled": np.zeros((len(sample), 3))}
    quiet = lambda *a, **k: None  # noqa: E731
    for train, held in grouped_folds(sample, 5, 42):
        std = standardize(features, *feature_stats(features[train]))
        data = ProbeData("pair", pooled[train], labels[train], std[train])
        held_data = data.rows_like(pooled[held], labels[held], std[held])
        chosen = choose_probe(data, prompt_groups(sample.iloc[train]), log=quiet)
        W, b = data.fit(chosen["C"], chosen["scale"], np.arange(len(train)))
        oof["today"][held] = softmax(held_data.design(chosen["scale"], np.arange(len(held)))[0] @ W.T + b)
        probe = StyleProbe(data, ratios[train])
        alone = fit_style_term(*decisive_style(ratios[train], labels[train]))
        params, term = probe.fit(probe.choose(prompt_groups(sample.iloc[train]), alone, log=quiet), alone, log=quiet)
        held_probe = StyleProbe(held_data, ratios[held])
        oof["style_term"][held] = held_probe.predict(params, np.arange(len(held)), term.logit(ratios[held]))
        oof["controlled"][held] = held_probe.predict(params, np.arange(len(held)), None)
    loss = {name: log_loss(labels, probs) for name, probs in oof.items()}
    assert loss["style_term"] - loss["today"] <= 0.012, loss
    assert loss["today"] < 1.05 and loss["style_term"] < 1.05, loss  # both learned (constant prior: about 1.097)
    # Controlled: the tie probabilities as voted, only who wins among decisive outcomes moves.
    np.testing.assert_allclose(oof["controlled"][:, 2], oof["style_term"][:, 2], atol=1e-12)


def test_cross_encoder_style_term_learns_who_wins_from_extra_rows(tmp_path, small_csv, arena_csv, tiny_deberta):
    """The joint family's --extra path: both renderings of the decisive extra rows through the frozen encoder."""
    extra = tmp_path / "extra.csv"
    pd.read_csv(arena_csv, dtype=str, keep_default_na=False).iloc[400:460].to_csv(extra, index=False)
    out = tmp_path / "model"
    run_cli("train", "--data", small_csv, "--extra", extra, "--output", out, "--model", "cross-encoder",
            "--style-term", "--backbone", tiny_deberta, "--max-length", 48, "--epochs", 0,
            env={"ARENAPREF_CACHE": str(tmp_path / "cache")})
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["probe"]["ab"]["extra_rows"] == int((pd.read_csv(extra)["winner_tie"] == 0).sum())
    judge = Predictor.from_pretrained(out)
    rows = load_frame(small_csv).head(10)
    voted, controlled = judge.predict_proba(rows), judge.predict_proba(rows, style="controlled")
    assert np.all(np.isfinite(controlled)) and not np.allclose(voted, controlled)


def test_cached_vectors_encode_each_sequence_once(tmp_path, monkeypatch, tiny_deberta):
    from arenapref.training.neural import cached_vectors

    monkeypatch.setenv("ARENAPREF_CACHE", str(tmp_path))
    model = _styled(DualTowerModel, tiny_deberta)
    asked = []

    def encode(todo):
        asked.append(len(todo))
        return np.array([[float(sum(seq)), float(len(seq))] for seq in todo], dtype=np.float32)

    first = cached_vectors(model, [[1, 2], [3], [1, 2]], encode)
    again = cached_vectors(model, [[3], [4, 5], [1, 2]], encode)  # a subset plus one new sequence
    assert asked == [2, 1]
    np.testing.assert_array_equal(first, [[3, 2], [3, 1], [3, 2]])
    np.testing.assert_array_equal(again, [[3, 1], [9, 2], [3, 2]])
    torch.nn.init.normal_(next(model.encoder.parameters()))  # other weights: another file
    cached_vectors(model, [[3]], encode)
    assert asked == [2, 1, 1] and len(list((tmp_path / "pooled").glob("*.npz"))) == 2
