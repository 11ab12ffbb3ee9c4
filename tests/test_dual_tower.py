import numpy as np
import pytest
import torch
from transformers import AutoModel

from arenapref.models import DualTowerModel
from arenapref.models.pooling import masked_mean


@pytest.fixture(scope="module")
def classify(tiny_deberta):
    torch.manual_seed(0)
    return DualTowerModel.from_backbone(str(tiny_deberta)).eval()


def test_head_is_reference_init_and_encoder_stays_pretrained(classify, tiny_deberta):
    head = classify.head
    assert head.weight.shape == (3, 2 * 32)
    assert abs(head.weight.std().item() - 0.02) < 0.006
    assert torch.count_nonzero(head.bias) == 0
    pretrained = AutoModel.from_pretrained(tiny_deberta)
    for (name, p), (_, q) in zip(classify.encoder.state_dict().items(), pretrained.state_dict().items()):
        assert torch.equal(p, q), name


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(masked_mean(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_padding_does_not_change_predictions(classify):
    ids = torch.randint(5, 700, (1, 2, 12))
    mask = torch.ones_like(ids)
    padded_ids = torch.cat([ids, torch.zeros(1, 2, 9, dtype=torch.long)], dim=2)
    padded_mask = torch.cat([mask, torch.zeros(1, 2, 9, dtype=torch.long)], dim=2)
    with torch.no_grad():
        a = classify(ids, mask).logits
        b = classify(padded_ids, padded_mask).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_save_and_load_give_identical_outputs(classify, tmp_path):
    classify.save_pretrained(tmp_path)
    again = DualTowerModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 700, (3, 2, 10))
    with torch.no_grad():
        assert torch.equal(classify(ids, torch.ones_like(ids)).logits, again(ids, torch.ones_like(ids)).logits)


def test_davidson_probabilities(tiny_deberta):
    model = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank")
    model.log_nu.data.fill_(np.log(0.5))
    scores = torch.tensor([[1.0, 0.0], [0.3, 0.3]])
    probs = torch.softmax(model.davidson_logits(scores), -1).detach().numpy()
    # Davidson: P(A) : P(B) : P(tie) = e^{sa} : e^{sb} : nu * e^{(sa+sb)/2}
    e = np.exp(1.0)
    expected = np.array([e, 1.0, 0.5 * np.sqrt(e)]) / (e + 1 + 0.5 * np.sqrt(e))
    assert np.allclose(probs[0], expected, atol=1e-6)
    assert np.isclose(probs[1, 0], probs[1, 1])


def test_fit_link_recovers_scale_and_tie_weight(tiny_deberta):
    model = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank", rank_loss="mse")
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1, (20000, 2))
    beta, nu = 2.0, 0.7
    s = scores * beta
    logits = np.stack([s[:, 0], s[:, 1], np.log(nu) + s.mean(1)], 1)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    link = model.fit_link(scores, labels)
    assert abs(link["scale"] - beta) < 0.1
    assert abs(np.exp(link["log_nu"]) - nu) < 0.05


def test_rank_losses(tiny_deberta):
    ids = torch.randint(5, 700, (3, 2, 8))
    labels = torch.tensor([0, 1, 2])
    mse = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank", rank_loss="mse")
    out = mse(ids, torch.ones_like(ids), labels=labels)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert torch.isclose(out.loss, torch.nn.functional.mse_loss(out.scores, target))
    dav = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank")
    out = dav(ids, torch.ones_like(ids), labels=labels)
    assert torch.isclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert dav.log_nu.requires_grad and not mse.log_nu.requires_grad
