"""Side features in the neural heads and the linear probe of LP-FT (probe.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from arenapref.data.features import (
    SHARED_COUNT,
    SIDE_COUNT,
    feature_stats,
    head_features,
    single_side_features,
    standardize,
    swap_features,
)
from arenapref.data.tables import load_frame
from arenapref.training.probe import (
    ProbeData,
    choose_probe,
    direction_offset,
    direction_refits,
    fit_davidson,
    fit_direction,
    fit_softmax,
    fold_into_head,
    side_difference,
)
from conftest import run_cli


def test_softmax_probe_equals_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=300) > 0).astype(int) + (rng.random(300) < 0.3)
    for C in (0.01, 1.0):
        W, b = fit_softmax(X, y, C)
        reference = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
        assert np.allclose(W, reference.coef_, atol=1e-4), C
        assert np.allclose(b, reference.intercept_, atol=1e-4), C


def test_direction_model_equals_sklearn_and_is_antisymmetric():
    """fit_direction is LogisticRegression(C, fit_intercept=False); its offset's softmax gives P(A) / P(B) =
    exp(w . (f_A - f_B)) whatever the tie logit, and exchanging A and B exchanges P(A) and P(B)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    features = rng.normal(size=(400, 2 * SIDE_COUNT + SHARED_COUNT))
    d = features[:, :SIDE_COUNT] - features[:, SIDE_COUNT:2 * SIDE_COUNT]
    a_wins = (d[:, 0] - d[:, 1] + rng.normal(size=400) > 0).astype(float)
    for C in (0.01, 1.0):
        w = fit_direction(d, a_wins, C)
        reference = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(d, a_wins)
        assert np.allclose(w, reference.coef_[0], atol=1e-4), C
    offset = direction_offset(side_difference(features), w) + np.array([0.0, 0.0, 0.7])  # any tie logit
    p = np.exp(offset) / np.exp(offset).sum(1, keepdims=True)
    assert np.allclose(p[:, 0] / (p[:, 0] + p[:, 1]), reference.predict_proba(d)[:, 1], atol=1e-4)
    mirrored = direction_offset(side_difference(swap_features(features)), w)
    assert np.allclose(mirrored, direction_offset(side_difference(features), w)[:, [1, 0, 2]])


def test_probe_cv_refits_the_direction_model_without_held_out_rows():
    """Labels that are noise: a direction model fitted on every row (held-out rows too) memorises them, and the
    probe's CV under that fixed offset looks far better than a coin; refitted per split (direction_refits) on the
    split's training rows, the held-out rows score no better than the label frequencies."""
    rng = np.random.default_rng(3)
    n = 120
    features = rng.normal(size=(n, 2 * SIDE_COUNT + SHARED_COUNT))
    labels = rng.integers(0, 2, size=n)  # decisive only, independent of the features
    D, a_wins, source = side_difference(features), (labels == 0).astype(float), np.arange(n)
    w = fit_direction(D, a_wins, C=100.0)
    data = ProbeData("pair", rng.normal(size=(n, 2, 4)), labels, features, direction=w)
    groups = np.arange(n)
    kwargs = dict(c_grid=(1e-3,), scale_grid=(0.03,), log=lambda *a: None)
    leaky = choose_probe(data, groups, **kwargs)["cv_log_loss"]
    refitted = choose_probe(data, groups, offset_for=direction_refits(D, D, a_wins, source, 100.0), **kwargs)
    assert leaky < 0.6 < np.log(2) - 0.05 < refitted["cv_log_loss"]


def test_davidson_probe_recovers_known_scores():
    rng = np.random.default_rng(1)
    true_w, log_nu = np.array([1.0, -0.5, 0.0]), np.log(0.6)
    xa, xb = rng.normal(size=(20_000, 3)), rng.normal(size=(20_000, 3))
    sa, sb = xa @ true_w, xb @ true_w
    logits = np.stack([sa, sb, log_nu + 0.5 * (sa + sb)], 1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (rng.random((len(p), 1)) > p.cumsum(1)).sum(1)
    w, fitted_nu = fit_davidson(xa, xb, y, C=10.0)
    assert np.allclose(w, true_w, atol=0.05)
    assert abs(fitted_nu - log_nu) < 0.05


def test_features_swap_and_single_sides(arena_csv):
    frame = load_frame(arena_csv).head(40)
    feats = head_features(frame)
    assert feats.shape == (40, 2 * SIDE_COUNT + SHARED_COUNT)
    from arenapref.data.swap import swap_frame

    assert np.allclose(head_features(swap_frame(frame)), swap_features(feats))
    # A response scored on its own has exactly the features it has as side A of a pair.
    alone = single_side_features(list(frame["prompt"]), list(frame["response_a"]))
    assert np.allclose(alone, feats[:, :SIDE_COUNT])


def _probe_setup(model, tokenizer, frame, kind: str, direction: np.ndarray | None = None):
    from arenapref.data.text import Renderer, TextSettings
    from arenapref.inference.backend import pooled_sequences
    from arenapref.models.dual_tower import set_feature_stats

    renderer = Renderer(tokenizer, TextSettings(max_length=32))
    feats = head_features(frame)
    set_feature_stats(model, *feature_stats(feats))
    std = standardize(feats, model.feature_mean.numpy(), model.feature_std.numpy())
    labels = frame["label"].to_numpy()
    if kind == "pair":
        a, b = renderer.dual_tower_inputs(frame)
        pooled = (pooled_sequences(model, list(a) + list(b), 0, 4096).numpy()
                  .reshape(2, len(frame), -1).transpose(1, 0, 2))
        return (ProbeData("pair", pooled, labels, std, rank=model.config.objective == "rank", direction=direction),
                feats, (a, b))
    from arenapref.data.swap import swap_frame

    rows, swapped = renderer.cross_inputs(frame), renderer.cross_inputs(swap_frame(frame))
    both = pooled_sequences(model, rows + swapped, 0, 4096).numpy()
    return ProbeData("joint", both[:len(frame)], labels, std, both[len(frame):], direction=direction), feats, rows


@pytest.fixture(scope="module")
def frame(arena_csv):
    return load_frame(arena_csv, require_labels=True).head(60)


@pytest.fixture(scope="module")
def tokenizer(tiny_deberta):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_deberta)


@pytest.mark.parametrize("family", ["dual-tower", "dual-tower-rank", "cross-encoder", "cross-encoder-fields",
                                    "dual-tower-direction", "cross-encoder-fields-direction"])
def test_probe_folded_into_the_head_gives_the_probe_logits(family, frame, tokenizer, tiny_deberta):
    """The head written from the probe's fit reproduces, on the model's own inputs, the probe's logits."""
    from arenapref.inference.backend import predict_rows
    from arenapref.models import CrossEncoderModel, DualTowerModel

    torch.manual_seed(0)
    direction = None
    if family.endswith("-direction"):  # a direction model (fit_direction) under the head, folded in with it
        family, direction = family.removesuffix("-direction"), np.random.default_rng(3).normal(size=SIDE_COUNT)
    if family.startswith("cross-encoder"):
        from arenapref.models.families import field_marker_ids

        pooling = "fields" if family.endswith("fields") else "mean"
        model = CrossEncoderModel.from_backbone(str(tiny_deberta), pooling=pooling, side_features=SIDE_COUNT,
                                                shared_features=SHARED_COUNT,
                                                field_marker_ids=field_marker_ids(tokenizer)).eval()
    else:
        rank = family.endswith("rank")
        model = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank" if rank else "classify",
                                             side_features=SIDE_COUNT,
                                             shared_features=0 if rank else SHARED_COUNT).eval()
    joint = family.startswith("cross-encoder")
    data, feats, rows = _probe_setup(model, tokenizer, frame, "joint" if joint else "pair", direction)
    everything = np.arange(len(frame))
    params = data.fit(0.1, 0.5, everything)
    weight, bias = fold_into_head(data, params, 0.5, data.pooled.shape[-1])
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight))
        model.head.bias.copy_(torch.as_tensor(bias))
        if data.rank:
            model.log_nu.fill_(params[1])
    first, second = data.design(0.5, everything)
    if data.rank:
        w, log_nu = params
        sa, sb = first @ w, second @ w
        expected = np.stack([sa, sb, log_nu + 0.5 * (sa + sb)], 1)
    else:
        expected = first @ params[0].T + params[1] + (0.0 if direction is None else data.offset)
    inputs = rows if joint else list(zip(*rows))
    got, _ = predict_rows(model, inputs, "joint" if joint else "pair", 0, features=feats)
    # Softmax logits are defined up to a per-row constant; compare probabilities.
    softmax = lambda z: np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
    assert np.allclose(softmax(got), softmax(expected), atol=1e-4)


def test_side_features_reach_the_head_and_the_reference_head_is_unchanged(tiny_deberta):
    from arenapref.models import DualTowerModel

    torch.manual_seed(0)
    model = DualTowerModel.from_backbone(str(tiny_deberta), side_features=SIDE_COUNT,
                                         shared_features=SHARED_COUNT).eval()
    assert model.head.weight.shape == (3, 2 * 32 + 2 * SIDE_COUNT + SHARED_COUNT)
    ids = torch.randint(5, 700, (2, 2, 10))
    feats = torch.zeros(2, 2 * SIDE_COUNT + SHARED_COUNT)
    with torch.no_grad():
        base = model(ids, torch.ones_like(ids), features=feats).logits
        feats[1, 0] = 3.0  # side A's first feature, tokens unchanged
        moved = model(ids, torch.ones_like(ids), features=feats).logits
    assert torch.allclose(base[0], moved[0]) and not torch.allclose(base[1], moved[1])
    with pytest.raises(ValueError, match="side features"):
        model(ids, torch.ones_like(ids))
    reference = DualTowerModel.from_backbone(str(tiny_deberta))
    assert reference.head.weight.shape == (3, 2 * 32) and "feature_mean" not in reference.state_dict()


@pytest.mark.slow
def test_train_probe_head_equals_logistic_regression_on_the_same_features(tmp_path, small_csv, tiny_deberta):
    """`train --epochs 0 --probe-c C` (probe only): the saved model's probabilities on its training rows are those
    of scikit-learn's LogisticRegression(C) fitted on the standardised pooled vectors + side features of the rows
    and their A/B mirrors."""
    from sklearn.linear_model import LogisticRegression

    from arenapref import Judge

    out = tmp_path / "probe"
    run_cli("train", "--data", small_csv, "--valid", small_csv, "--output", out, "--model", "dual-tower",
            "--backbone", tiny_deberta, "--max-length", 32, "--epochs", 0, "--probe-c", 0.05)
    meta = json.loads((out / "arenapref.json").read_text())
    assert meta["probe"]["C"] == 0.05 and "fine_tune" not in meta and meta["head_features"]
    assert not (out / "checkpoints").exists()
    judge = Judge.from_pretrained(out, device="cpu")
    frame = load_frame(small_csv, require_labels=True)
    model, renderer = judge.model, judge.backend.renderer
    a, b = renderer.dual_tower_inputs(frame)
    from arenapref.inference.backend import pooled_sequences

    pooled = pooled_sequences(model, list(a) + list(b), judge.tokenizer.pad_token_id, 4096).numpy()
    pa, pb = pooled[:len(frame)], pooled[len(frame):]
    both = np.vstack([pa, pb])
    mean, std = both.mean(0), both.std(0)
    pa, pb = (pa - mean) / std, (pb - mean) / std
    f = standardize(head_features(frame), model.feature_mean.numpy(), model.feature_std.numpy())
    X = np.vstack([np.hstack([pa, pb, f]), np.hstack([pb, pa, swap_features(f)])])
    y = frame["label"].to_numpy()
    lr = LogisticRegression(C=0.05, tol=1e-10, max_iter=10_000).fit(X, np.concatenate([y, np.array([1, 0, 2])[y]]))
    expected = lr.predict_proba(X[:len(frame)])
    got = judge.predict_proba(frame) if meta["calibration"]["temperature"] == 1.0 else None
    from arenapref.evaluation.metrics import softmax

    raw = softmax(judge.backend.predict_logits(frame)[0])  # before the calibration temperature
    assert np.allclose(raw, expected, atol=2e-3)
    assert got is None or np.allclose(got, expected, atol=2e-3)


@pytest.mark.slow
def test_fine_tuning_that_does_not_help_keeps_the_probe(tmp_path, tiny_csv, tiny_deberta):
    out = tmp_path / "lpft"
    # An absurd learning rate wrecks whatever the probe found: the probe's model must be the one saved.
    run_cli("train", "--data", tiny_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--batch-size", 8, "--eval-steps", 2, "--lr", 5.0, "--head-lr", 5.0,
            "--valid-fraction", 0.25, "--probe-c", 0.05)
    meta = json.loads((out / "arenapref.json").read_text())
    tune = meta["fine_tune"]
    assert tune["kept"] == "probe" and tune["probe_valid"] <= tune["best_valid"]
    assert abs(meta["valid_metrics"]["log_loss"] - tune["probe_valid"]) < 0.05  # (calibration moves it a bit)


@pytest.mark.slow
def test_reference_recipe_is_reachable(tmp_path, tiny_csv, tiny_deberta):
    from safetensors.torch import load_file

    out = tmp_path / "reference"
    run_cli("train", "--data", tiny_csv, "--output", out, "--model", "dual-tower", "--backbone", tiny_deberta,
            "--max-length", 32, "--epochs", 1, "--batch-size", 8, "--no-head-features", "--no-probe")
    meta = json.loads((out / "arenapref.json").read_text())
    assert not meta["head_features"] and "probe" not in meta and meta["fine_tune"]["kept"] == "fine-tuned"
    weights = load_file(out / "model.safetensors")
    assert weights["head.weight"].shape == (3, 64) and "feature_mean" not in weights


@pytest.mark.slow
def test_extra_rows_teach_the_neural_head_only_who_wins(tmp_path, arena_csv, tiny_deberta):
    """--extra with a probed dual tower: the extra rows fit the direction model (their side features only, never
    encoded), the 3-way fit sees the --data rows, so a tie-free extra file leaves P(tie) at the --data tie rate."""
    from arenapref import Judge

    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    raw.head(200).to_csv(tmp_path / "train.csv", index=False)
    rest = raw.iloc[200:]
    rest[rest["winner_tie"] == "0"].head(300).to_csv(tmp_path / "extra.csv", index=False)  # decisive rows only
    out = tmp_path / "dt"
    proc = run_cli("train", "--data", tmp_path / "train.csv", "--extra", tmp_path / "extra.csv", "--output", out,
                   "--model", "dual-tower", "--backbone", tiny_deberta, "--max-length", 32, "--epochs", 0)
    meta = json.loads((out / "arenapref.json").read_text())
    direction = meta["probe"]["direction"]
    assert direction["extra_rows"] == 300 and meta["train_rows"] + meta["valid_rows"] == 200
    own = load_frame(tmp_path / "train.csv", require_labels=True)
    assert 300 < direction["rows"] < 300 + int((own["label"] < 2).sum())  # + the training part's decisive rows
    assert "teach the head who wins" in proc.stdout + proc.stderr
    probs = Judge.from_pretrained(out, device="cpu").predict_proba(load_frame(arena_csv).iloc[800:900])
    tie_rate = float((own["label"] == 2).mean())
    assert abs(float(probs[:, 2].mean()) - tie_rate) < 0.08, (probs[:, 2].mean(), tie_rate)
