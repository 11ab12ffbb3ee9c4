"""No model arenapref builds or loads asks the Hub for kernels. transformers 5.25 kernelizes by default at
from_pretrained and again at every train() / eval() switch; on an H200 with the Hub offline (bench/gpu_check.sh) that
failed the first evaluation of every training run, of every family. On a CPU kernelize finds nothing to swap, so
here it is replaced by one that fails, as it did there."""

from __future__ import annotations

import pytest
import transformers.modeling_utils as modeling_utils

from arenapref.models import MODELS
from arenapref.models.cross_encoder import CrossEncoderModel
from arenapref.models.dual_tower import DualTowerModel
from arenapref.models.llm import LLM
from test_llm import llm_config


@pytest.fixture(autouse=True)
def hub_kernels_fail(monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("kernelize called: on a GPU this downloads kernels from the Hub")

    monkeypatch.setattr(modeling_utils, "kernelize", fail)


def switched(model):
    """The model after the switches the Trainer makes (train for the steps, eval for each evaluation)."""
    model.train()
    model.eval()
    assert not any(getattr(m, "use_kernels", False) for m in model.modules())
    return model


@pytest.mark.parametrize("family,build", [("dual-tower", DualTowerModel.from_backbone),
                                          ("cross-encoder", CrossEncoderModel.from_backbone)])
def test_encoder_families_build_and_load_without_hub_kernels(family, build, tiny_deberta, tmp_path):
    switched(build(str(tiny_deberta))).save_pretrained(tmp_path / "saved")
    switched(MODELS[family].load_recipe().load(tmp_path / "saved"))


def test_llm_builds_and_loads_without_hub_kernels(tiny_llama, tmp_path):
    cfg = llm_config(tiny_llama, tmp_path)
    model = switched(LLM.build(cfg, LLM.tokenizer(cfg.backbone, cfg)))
    LLM.for_saving(model).save_pretrained(tmp_path / "saved")
    switched(LLM.load(tmp_path / "saved"))
