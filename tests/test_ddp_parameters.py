"""Every parameter that trains reaches the loss, so DistributedDataParallel needs no find_unused_parameters.

The Trainer wraps our models (PreTrainedModels) in DDP with find_unused_parameters off whenever gradient checkpointing
is on (it breaks checkpointing), and then a trainable parameter that never reaches the loss stops the second step
("Expected to have finished reduction in the prior iteration"). That is what `torchrun --nproc_per_node N train
--gradient-checkpointing` runs into for N >= 2 (accelerate wraps one process in no DDP), on several GPUs (nccl) or
CPU processes (gloo); here the same DDP runs in one process on gloo, two steps.
Two such parameters existed: the Davidson tie weight of a 3-way head (used by the rank objective only) and a
backbone's pooler (BERT's tanh layer over [CLS]: computed, never read by our pooling).
"""

from __future__ import annotations

import gc

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from arenapref.data.features import SHARED_COUNT, SIDE_COUNT
from arenapref.models.cross_encoder import CrossEncoderModel
from arenapref.models.dual_tower import DualTowerModel


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, tiny_deberta):
    """A BERT backbone with its pooler (like all-MiniLM-L6-v2, the default backbone), with tiny_deberta's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(tiny_deberta)
    out = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, pad_token_id=tokenizer.pad_token_id)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def pair_batch(model, rows: int = 4, length: int = 12) -> dict:
    torch.manual_seed(1)
    ids = torch.randint(5, 300, (rows, 2, length))
    mask = torch.ones_like(ids)
    mask[0, 1, 7:] = 0
    batch = {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 0][:rows])}
    width = model.config.side_features * 2 + model.config.shared_features
    if width:
        batch["features"] = torch.randn(rows, width)
    return batch


def joint_batch(model, rows: int = 4, length: int = 20) -> dict:
    batch = pair_batch(model, rows, length)
    batch["input_ids"], batch["attention_mask"] = batch["input_ids"][:, 0], batch["attention_mask"][:, 0]
    return batch


def ddp_steps(model, batch: dict, store, steps: int = 2) -> None:
    """`steps` forward / backward passes under DDP with find_unused_parameters off, as the Trainer runs it under
    gradient checkpointing (one process, gloo)."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model.train(), find_unused_parameters=False)
        for _ in range(steps):
            ddp(**batch).loss.backward()
        # The wrapper (its reducer holds the process group) goes before the group: freed the other way round, the
        # group's destructor ran inside the reducer's and once hung joining gloo's threads (a CI run, under load).
        del ddp
        gc.collect()
    finally:
        dist.destroy_process_group()


def unused_trainable(model, batch: dict) -> list[str]:
    model.zero_grad(set_to_none=True)
    model.train()(**batch).loss.backward()
    return [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]


BUILDS = {
    "dual tower, plain head": lambda backbone: DualTowerModel.from_backbone(backbone),
    "dual tower, side features": lambda backbone: DualTowerModel.from_backbone(
        backbone, side_features=SIDE_COUNT, shared_features=SHARED_COUNT),
    "dual tower, rank davidson": lambda backbone: DualTowerModel.from_backbone(backbone, objective="rank"),
    "dual tower, rank mse": lambda backbone: DualTowerModel.from_backbone(backbone, objective="rank", rank_loss="mse"),
    "cross-encoder": lambda backbone: CrossEncoderModel.from_backbone(
        backbone, side_features=SIDE_COUNT, shared_features=SHARED_COUNT),
}


@pytest.mark.parametrize("backbone", ["tiny_deberta", "tiny_bert"])
@pytest.mark.parametrize("build", list(BUILDS))
def test_every_trainable_parameter_reaches_the_loss(build, backbone, request, tmp_path):
    model = BUILDS[build](str(request.getfixturevalue(backbone)))
    batch = joint_batch(model) if isinstance(model, CrossEncoderModel) else pair_batch(model)
    assert unused_trainable(model, batch) == []
    ddp_steps(model, batch, tmp_path / "store")  # raised "Expected to have finished reduction ..." before


def test_the_davidson_tie_weight_still_trains_for_rank(tiny_deberta):
    model = DualTowerModel.from_backbone(str(tiny_deberta), objective="rank")
    assert model.log_nu.requires_grad
    model(**pair_batch(model)).loss.backward()
    assert model.log_nu.grad is not None and model.log_nu.grad.abs() > 0
    assert not DualTowerModel.from_backbone(str(tiny_deberta), objective="rank", rank_loss="mse").log_nu.requires_grad
