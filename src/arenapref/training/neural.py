"""Training on the Hugging Face Trainer: read data, tokenise once, train, keep the best checkpoint, save a model dir.

Works unchanged under `torchrun` / `accelerate launch` (the Trainer handles distribution) and with bf16/fp16.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from transformers import TrainerCallback, TrainingArguments, set_seed

from arenapref.config import TrainConfig
from arenapref.data.features import feature_stats, head_features, standardize
from arenapref.data.split import load_train_valid, prompt_groups, validation_scope
from arenapref.data.swap import average_with_swapped, swap_frame
from arenapref.data.tables import check_output_dir, write_text_atomic
from arenapref.data.text import Renderer, TextSettings
from arenapref.data.token_cache import cached_encode_rows, default_cache_dir
from arenapref.errors import DataError
from arenapref.evaluation.calibration import calibrate
from arenapref.evaluation.metrics import classification_metrics, log_loss, softmax
from arenapref.inference.backend import model_features, pooled_sequences, predict_rows, reads_features
from arenapref.inference.batching import call_budget, collator_for
from arenapref.models import META_FILE, MODELS
from arenapref.models.directory import TRAINING_LOG, training_meta, write_meta
from arenapref.models.dual_tower import set_feature_stats, set_style_term
from arenapref.models.loading import backbone_reference
from arenapref.models.style_term import decisive_style, fit_style_term, style_ratios
from arenapref.training.checkpoints import (
    checkpoint_root,
    mark_complete,
    plan_start,
    remove_checkpoints,
)
from arenapref.training.dataset import FlattenCollator, PreferenceDataset
from arenapref.training.distill import read_teacher_probs, soft_targets
from arenapref.training.probe import (
    ProbeData,
    StyleProbe,
    choose_direction,
    choose_probe,
    direction_refits,
    fold_into_head,
    side_difference,
)
from arenapref.training.trainer import PreferenceTrainer


def compute_metrics(eval_pred) -> dict:
    logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
    probs = softmax(logits)
    labels = np.asarray(eval_pred.label_ids)
    return {"log_loss": log_loss(labels, probs), "accuracy": float((probs.argmax(1) == labels).mean())}


def _optimizer(model, cfg: TrainConfig, is_head):
    """AdamW with the backbone (or its LoRA adapters) at `lr` and the new head (and Davidson tie weight) at
    `head_lr`."""
    head, encoder = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (head if is_head(name) else encoder).append(param)
    groups = [{"params": encoder, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
              {"params": head, "lr": cfg.effective_head_lr, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


class MarkCheckpointComplete(TrainerCallback):
    """After the Trainer has written checkpoint-N (on_save comes after it), mark it whole for --resume."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")


class SwapEpochCallback(TrainerCallback):
    """--swap-augment random: each epoch draws new coins, in every process of a distributed run."""

    def __init__(self, dataset, log):
        self.dataset, self.log = dataset, log

    def on_epoch_begin(self, args, state, control, **kwargs):
        dataset = self.dataset
        # state.epoch is fractional (a resumed run starts mid-epoch) and may sit a hair under a whole number.
        dataset.set_epoch(int(state.epoch + 1e-6))
        rank = f"rank {dist.get_rank()}: " if dist.is_available() and dist.is_initialized() else ""
        swapped = sum(dataset.coin(i) for i in range(len(dataset)))
        self.log(f"{rank}swap-augment epoch {dataset.epoch}: {swapped} of {len(dataset)} rows swapped "
                 f"(coins {dataset.coins_digest()})")


def train_neural(cfg: TrainConfig, log=print, valid_out: dict | None = None) -> dict:
    """Linear probe and / or HF Trainer run for a neural family; keeps the best model by validation log loss.
    `valid_out` (a dict) receives the validation labels and calibrated probabilities."""
    recipe = MODELS[cfg.model].load_recipe(cfg.objective)
    set_seed(cfg.seed)
    output = check_output_dir(cfg.output)
    train_frame, valid_frame = load_train_valid(cfg, log)
    train_frame, extra_frame = split_direction_rows(cfg, train_frame, log)
    teacher = read_teacher_probs(cfg.teacher_probs, train_frame["id"]) if cfg.teacher_probs else None
    if cfg.fp16 and not torch.cuda.is_available():
        raise DataError("--fp16 needs a CUDA GPU and none is visible; use --bf16 on CPU, or neither")
    resume_from = prepare_output(output, cfg.resume, log)

    tokenizer = recipe.tokenizer(cfg.backbone, cfg)
    settings = TextSettings(max_length=cfg.max_length, response_weight=cfg.response_weight,
                            truncation_side=cfg.truncation_side, field_weights=cfg.field_weights,
                            joint_packing=cfg.joint_packing)
    renderer = Renderer(tokenizer, settings)

    def encode(frame):
        return cached_encode_rows(renderer, recipe.inputs, frame, default_cache_dir(), log)[0]

    train_labels = train_frame["label"].to_numpy()
    # Tokenised once, and reused by a rerun or --resume on the same rows, text settings and tokenizer (token_cache.py).
    train_inputs = encode(train_frame)
    swapped = None
    if cfg.swap_augment != "none":
        # A pair's swap is its two sides exchanged; a joint sequence is rendered again with A and B exchanged.
        swapped = [(b, a) for a, b in train_inputs] if recipe.inputs == "pair" else encode(swap_frame(train_frame))
    soft = soft_targets(teacher, train_labels, cfg.distill_alpha) if teacher is not None else None
    model = recipe.build(cfg, tokenizer)
    pad_id = tokenizer.pad_token_id
    train_features = valid_features = None
    if reads_features(model):
        train_features, valid_features = model_features(model, train_frame), model_features(model, valid_frame)
        set_feature_stats(model, *feature_stats(train_features))
    style = None
    if cfg.style_term:  # the style term alone (the leaderboard's style model); the probe then alternates
        ratios = style_ratios(train_frame)
        style = ratios, fit_style_term(*decisive_style(ratios, train_labels))
        set_style_term(model, style[1])
    train_ds = PreferenceDataset(train_inputs, train_labels, soft, swapped, cfg.swap_augment, cfg.seed, train_features)
    valid_ds = PreferenceDataset(encode(valid_frame), valid_frame["label"].to_numpy(), features=valid_features)

    args = training_arguments(cfg, output)
    meta_extra: dict = {}
    start = time.time()
    if cfg.probe and cfg.model in ("dual-tower", "cross-encoder"):
        joint_swapped = None
        if recipe.inputs == "joint":
            joint_swapped = swapped or encode(swap_frame(train_frame))
        direction = extra = None
        if extra_frame is not None and style is None:
            direction = direction_rows(model, [train_frame, extra_frame])
        elif extra_frame is not None:  # a style-term head's A-vs-B logit reads the extra rows' text
            extra_frame = extra_frame[extra_frame["label"].to_numpy() < 2].reset_index(drop=True)
            extra = extra_frame, encode(extra_frame), encode(swap_frame(extra_frame)) if joint_swapped else None
        meta_extra["probe"] = linear_probe(model, cfg, train_inputs, train_labels, train_features,
                                           prompt_groups(train_frame), pad_id, args.device, joint_swapped, log,
                                           direction, style, extra)
        if extra_frame is not None:
            meta_extra["probe"]["direction" if style is None else "ab"]["extra_rows"] = int(len(extra_frame))
    if style is not None:
        term = meta_extra.get("probe", {}).pop("style_term", style[1])
        meta_extra["style_term"] = {**term.to_meta(), "content": CONTENT_READ,
                                    "fitted": "alternated with the linear probe's A-vs-B logit; fixed while "
                                              "fine-tuning" if "probe" in meta_extra else
                                              "alone, before fine-tuning; fixed while fine-tuning"}
    if cfg.epochs > 0:
        model, meta_extra["fine_tune"] = fine_tune(model, cfg, args, recipe, train_ds, valid_ds, pad_id, resume_from,
                                                   "probe" in meta_extra, log)
    if args.process_index != 0:
        return {}
    model = recipe.for_saving(model)
    meta = training_meta(
        cfg.model, cfg,
        objective=cfg.objective,
        rank_loss=cfg.rank_loss,
        backbone=cfg.backbone,
        **({"backbone_reference": backbone_reference(cfg.backbone)} if cfg.backbone_weights == "reference" else {}),
        text=settings.to_dict(),
        head_features=reads_features(model),
        **meta_extra,
        calibration={"temperature": 1.0},
        train_rows=len(train_frame),
        valid_rows=len(valid_frame),
        train_seconds=round(time.time() - start, 1),
    )
    swapped_valid = [(b, a) for a, b in valid_ds.inputs] if recipe.inputs == "pair" else encode(swap_frame(valid_frame))
    probs = calibrate_on_validation(model, cfg, meta, recipe.inputs, pad_id, args.device, valid_ds, swapped_valid,
                                    valid_frame, log)
    metrics = classification_metrics(valid_ds.labels, probs)
    if valid_out is not None:
        valid_out.update(labels=valid_ds.labels, probs=probs, frame=valid_frame)
    meta["valid_metrics"] = {k: v for k, v in metrics.items() if k != "confusion"}
    meta["valid_metrics_scope"] = validation_scope(valid_frame, VALID_SCOPE + (" and the score link"
                                                                              if is_rank_mse(cfg) else ""))
    training_log = meta_extra.get("fine_tune", {}).pop("training_log", None)
    save_model_dir(output, model, tokenizer, meta)
    # The model directory keeps what loading needs plus the training curve; the checkpoints (weights, optimizer
    # state) were only there for --resume and go once the model is saved.
    if training_log is not None:
        write_text_atomic(json.dumps(training_log, indent=1), output / TRAINING_LOG)
    remove_checkpoints([checkpoint_root(output)])
    return metrics


# What the content term of a style-term neural head reads (arenapref.json, style_term.content).
CONTENT_READ = ("the encoder's pooled text, the content side features (features.content_side_mask: no length or "
                "markdown count) and the pair and prompt features")


def prepare_output(output: Path, resume: bool, log) -> Path | None:
    """The checkpoint to resume from (None: start afresh), after removing stale checkpoints; from here until
    save_model_dir finishes, the directory does not look like a finished model."""
    resume_from, stale = plan_start(output, resume)
    output.mkdir(parents=True, exist_ok=True)
    if stale:
        log(f"removing {len(stale)} incomplete or stale checkpoint(s): {', '.join(p.name for p in stale)}")
        remove_checkpoints(stale)
    if resume and resume_from is None:
        log(f"no complete checkpoint in {output / 'checkpoints'}; starting from the beginning")
    (output / META_FILE).unlink(missing_ok=True)
    return resume_from


def training_arguments(cfg: TrainConfig, output: Path):
    """The HF Trainer's arguments for a run configured by `cfg`, checkpoints under OUTPUT/checkpoints."""
    args = TrainingArguments(
        output_dir=str(output / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        # The MSE rank loss gets its score link after training: until then only its validation loss exists.
        metric_for_best_model="loss" if is_rank_mse(cfg) else "log_loss",
        greater_is_better=False,
        logging_steps=max(1, min(cfg.eval_steps, 10)),
        seed=cfg.seed,
        bf16=cfg.bf16,
        # Without use_cpu a CPU-only torchrun launch would run N independent trainings instead of one DDP job.
        use_cpu=not torch.cuda.is_available(),
        fp16=cfg.fp16,
        gradient_checkpointing=cfg.gradient_checkpointing,
        report_to=[] if cfg.report_to == "none" else cfg.report_to.split(","),
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        save_only_model=False,
        disable_tqdm=False,
    )
    if "tensorboard" in args.report_to:  # beside the model, not under checkpoints/ (removed on success)
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(output / "logs")
    return args


def calibrate_on_validation(model, cfg: TrainConfig, meta: dict, inputs: str, pad_id: int, device, valid_ds,
                            swapped_inputs: list, valid_frame, log) -> np.ndarray:
    """Fits the rank-MSE score link (if any) and the temperatures (plain and swap TTA: two views averaged change
    the confidence) on the validation rows, into `meta`; returns the calibrated validation probabilities."""
    features = valid_ds.features
    logits, scores = predict_rows(model, valid_ds.inputs, inputs, pad_id, device=device, features=features)
    if is_rank_mse(cfg):
        meta["link"] = model.fit_link(scores, valid_ds.labels)
        logits, _ = predict_rows(model, valid_ds.inputs, inputs, pad_id, device=device, features=features)
    swapped_features = model_features(model, swap_frame(valid_frame))
    swapped_logits, _ = predict_rows(model, swapped_inputs, inputs, pad_id, device=device, features=swapped_features)
    meta["calibration"], probs = calibrate_modes(logits, average_with_swapped(logits, swapped_logits),
                                                 valid_ds.labels, prompt_groups(valid_frame), log)
    return probs


# What the validation figures are (and are not) out of sample for: /v1/model and the model card show it beside them.
VALID_SCOPE = ("validation rows held out from training (grouped by prompt); temperature cross-fitted (each row "
               "calibrated by a temperature fitted on the other rows); in-sample for the checkpoint choice")


def is_rank_mse(cfg: TrainConfig) -> bool:
    return cfg.model == "dual-tower" and cfg.objective == "rank" and cfg.rank_loss == "mse"


def calibrate_modes(logits: np.ndarray, swap_logits: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                    log) -> tuple[dict, np.ndarray]:
    """Temperatures for plain prediction and for swap TTA, each fitted on its own validation logits; returns the
    calibration record and the cross-fitted plain probabilities (the honest validation figures)."""
    temperature, probs = calibrate(logits, labels, log, groups)
    temperature_swap, _ = calibrate(swap_logits, labels, log, what=" (swap TTA)")
    return {"temperature": temperature, "temperature_swap": temperature_swap, "fitted_on": "validation",
            "rows": int(len(labels))}, probs


def uses_direction(cfg: TrainConfig) -> bool:
    """Whether --extra rows teach only who wins (training/probe.py): a probed 3-way head with side features, through
    its direction model, or with a style term through its A-vs-B logit."""
    return (cfg.model in ("dual-tower", "cross-encoder") and cfg.objective == "classify" and cfg.probe
            and cfg.head_features)


def split_direction_rows(cfg: TrainConfig, train_frame, log):
    """(--data training rows, --extra rows or None). The extra rows of a `uses_direction` model fit only the
    direction model under its head; every other neural recipe trains on them like on --data rows."""
    if "is_extra" not in train_frame or not uses_direction(cfg):
        return train_frame, None
    is_extra = train_frame["is_extra"].to_numpy(bool)
    own = train_frame[~is_extra].drop(columns="is_extra").reset_index(drop=True)
    extra = train_frame[is_extra].reset_index(drop=True)
    how = "its A-vs-B logit, on their text" if cfg.style_term else "a direction model on side features"
    log(f"--extra: {len(extra)} rows teach the head who wins ({how}, training/probe.py); the head's tie fit, "
        f"fine-tuning and calibration use the {len(own)} --data training rows")
    return own, extra


def direction_rows(model, frames: list) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The direction model's data: standardised side-feature differences, A-wins labels, prompt groups and the
    source row (index in frames[0], the --data training rows; -1 for the other frames) of the decisive rows of
    `frames` (the model's feature statistics, from the --data rows)."""
    import pandas as pd

    source = np.concatenate([np.arange(len(frames[0]))] + [np.full(len(f), -1) for f in frames[1:]])
    frame = pd.concat([f[["prompt", "response_a", "response_b", "label"]] for f in frames], ignore_index=True)
    decisive = (frame["label"] < 2).to_numpy()
    frame = frame[decisive].reset_index(drop=True)
    features = standardize(head_features(frame), model.feature_mean.cpu().numpy(), model.feature_std.cpu().numpy())
    return (side_difference(features), (frame["label"].to_numpy() == 0).astype(np.float64), prompt_groups(frame),
            source[decisive])


def frozen_pooled(model, inputs: list, joint_swapped: list | None, pad_id: int, device, cache: bool = False):
    """The frozen encoder's pooled vectors of encoded rows: (N, 2, H) and None for a dual tower, (N, H) of the rows
    and (N, H) of their A/B-exchanged renderings for a cross-encoder. `cache`: every sequence's vector is kept on
    disk (beside the token cache, data/token_cache.py), in one file per encoder weights keyed by the sequence's
    token ids, so rows read again (the --extra rows of a style-term head, minutes per thousand rows on a CPU; a
    cross-validation's folds read subsets of them) are encoded once."""
    sequences = ([a for a, _ in inputs] + [b for _, b in inputs] if joint_swapped is None
                 else list(inputs) + list(joint_swapped))
    budget = call_budget(None, device)
    if cache:
        vectors = cached_vectors(model, sequences, lambda todo: pooled_sequences(
            model, todo, pad_id, budget, device).float().cpu().numpy())
    else:
        vectors = pooled_sequences(model, sequences, pad_id, budget, device).float().cpu().numpy()
    if joint_swapped is None:  # dual tower: every side its own sequence
        return vectors.reshape(2, len(inputs), -1).transpose(1, 0, 2), None
    return vectors[:len(inputs)], vectors[len(inputs):]


def cached_vectors(model, sequences: list, encode) -> np.ndarray:
    """(len(sequences), H) vectors, those of sequences already in the cache file of the model's configuration and
    encoder weights read from it, the rest from `encode(list of sequences)` and added to the file (rewritten
    atomically; a damaged file is started anew)."""
    digest = hashlib.sha256(model.config.to_json_string().encode())  # how the model pools, besides the weights
    for name, tensor in sorted(model.encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    path = default_cache_dir().parent / "pooled" / f"{digest.hexdigest()[:40]}.npz"
    keys = [hashlib.sha1(np.asarray(seq, dtype=np.int64).tobytes()).digest() for seq in sequences]
    known_keys, known = np.zeros(0, dtype="S20"), None
    try:
        with np.load(path) as saved:
            known_keys, known = saved["keys"], saved["vectors"]
    except (OSError, KeyError, ValueError):
        pass
    index = {k: i for i, k in enumerate(known_keys.tolist())}
    todo = list(dict.fromkeys(k for k in keys if k not in index))
    if todo:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        new = encode([sequences[first[k]] for k in todo])
        known = new if known is None else np.vstack([known, new.astype(known.dtype)])
        known_keys = np.concatenate([known_keys, np.array(todo, dtype="S20")])
        index.update({k: len(index) + i for i, k in enumerate(todo)})
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez(handle, keys=known_keys, vectors=known)
        os.replace(handle.name, path)
    return known[[index[k] for k in keys]]


def linear_probe(model, cfg: TrainConfig, inputs: list, labels: np.ndarray, features: np.ndarray | None,
                 groups: np.ndarray, pad_id: int, device, joint_swapped: list | None, log,
                 direction: tuple | None = None, style: tuple | None = None, extra: tuple | None = None) -> dict:
    """LP of LP-FT (training/probe.py): encode the training rows once with the frozen encoder, fit the head by L-BFGS
    (C and the pooled block's weight by grouped CV on these rows unless --probe-c is given), write it into the
    model's head. `direction` (direction_rows of --data + --extra) first fits the direction model the head is
    fitted on top of. `style` (the rows' style differences, the style term fitted alone): a style-term head
    (style_probe); `extra` its decisive --extra rows (frame, encoded rows, encoded swapped rows or None).
    Returns what was chosen."""
    model.to(device).eval()
    t0 = time.time()
    pooled, swapped = frozen_pooled(model, inputs, joint_swapped, pad_id, device)
    log(f"linear probe: encoded {len(inputs)} training rows with the frozen encoder in {time.time() - t0:.0f}s")
    std_features = None
    if features is not None:
        std_features = standardize(features, model.feature_mean.cpu().numpy(), model.feature_std.cpu().numpy())
    data = ProbeData("pair" if joint_swapped is None else "joint", pooled, labels, std_features, swapped,
                     rank=getattr(model.config, "objective", "classify") == "rank")
    if style is not None:
        return style_probe(model, cfg, data, style[0], groups, pad_id, device, extra, log)
    fitted_direction = None if direction is None else choose_direction(*direction[:3], seed=cfg.seed, log=log)
    if fitted_direction is not None:
        data = ProbeData(data.kind, pooled, labels, std_features, swapped, direction=fitted_direction["weights"])
    if cfg.probe_c is None:
        refits = None if fitted_direction is None else direction_refits(
            side_difference(std_features), direction[0], direction[1], direction[3], fitted_direction["C"])
        chosen = choose_probe(data, groups, seed=cfg.seed, log=log, offset_for=refits)
    else:
        chosen = {"C": cfg.probe_c, "scale": 1.0}
    params = data.fit(chosen["C"], chosen["scale"], np.arange(len(labels)))
    set_head(model, *fold_into_head(data, params, chosen["scale"], pooled.shape[-1]))
    if data.rank:
        with torch.no_grad():
            model.log_nu.fill_(float(params[1]))
    chosen["train_log_loss"] = data.log_loss(params, chosen["scale"], np.arange(len(labels)))
    if fitted_direction is not None:
        chosen["direction"] = {k: v for k, v in fitted_direction.items() if k != "weights"}
    return {k: v for k, v in chosen.items() if k != "grid"}


def set_head(model, weight: np.ndarray, bias: np.ndarray) -> None:
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight, dtype=model.head.weight.dtype))
        model.head.bias.copy_(torch.as_tensor(bias, dtype=model.head.bias.dtype))


def style_probe(model, cfg: TrainConfig, data: ProbeData, ratios: np.ndarray, groups: np.ndarray, pad_id: int,
                device, extra: tuple | None, log) -> dict:
    """The probe of a style-term head (probe.StyleProbe): its tie row on the --data rows, its A-vs-B rows and the
    style term on their decisive rows and the decisive --extra rows, whose text the frozen encoder reads once
    (cached: frozen_pooled)."""
    extra_data = extra_ratios = None
    extra_labels = np.zeros(0, dtype=np.int64)
    if extra is not None:
        frame, inputs, swapped = extra
        t0 = time.time()
        pooled, pooled_swapped = frozen_pooled(model, inputs, swapped, pad_id, device, cache=True)
        log(f"linear probe: the frozen encoder's vectors of {len(frame)} decisive --extra rows ready in "
            f"{time.time() - t0:.0f}s (cached for the next run)")
        extra_labels = frame["label"].to_numpy()
        extra_features = standardize(head_features(frame), model.feature_mean.cpu().numpy(),
                                     model.feature_std.cpu().numpy())
        extra_data = data.rows_like(pooled, extra_labels, extra_features, pooled_swapped)
        extra_ratios = style_ratios(frame)
    probe = StyleProbe(data, ratios, extra_data, extra_ratios)
    alone = fit_style_term(*decisive_style(probe.all_ratios(), np.concatenate([data.labels, extra_labels])))
    if cfg.probe_c is None:
        chosen = probe.choose(groups, alone, seed=cfg.seed, log=log)
    else:
        chosen = {part: {"C": cfg.probe_c, "scale": 1.0} for part in ("tie", "ab")}
    params, chosen["style_term"] = probe.fit(chosen, alone, log=log)
    set_style_term(model, chosen["style_term"])
    set_head(model, *fold_into_head(data, params, 1.0, data.pooled.shape[-1]))
    rows = np.arange(len(data.labels))
    chosen["train_log_loss"] = log_loss(data.labels, probe.predict(params, rows, chosen["style_term"].logit(ratios)))
    return chosen


def fine_tune(model, cfg: TrainConfig, args, recipe, train_ds, valid_ds, pad_id: int, resume_from, after_probe: bool,
              log):
    """The HF Trainer run, best checkpoint by validation log loss. After a probe, the probe's model stays unless
    fine-tuning beats it on the same validation rows."""
    trainer = PreferenceTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=valid_ds,
                                data_collator=FlattenCollator(collator_for(recipe.inputs, pad_id)),
                                compute_metrics=compute_metrics,
                                optimizers=(_optimizer(model, cfg, recipe.is_head), None),
                                model_computes_loss=recipe.model_computes_loss, group_by_length=cfg.group_by_length,
                                callbacks=[MarkCheckpointComplete()]
                                + ([SwapEpochCallback(train_ds, log)] if cfg.swap_augment == "random" else []))
    before, metric = None, args.metric_for_best_model
    if after_probe:
        # The probe's model on the metric that chooses checkpoints, so the two are compared like with like.
        before = trainer.evaluate()[f"eval_{metric}"]
        probe_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if resume_from is not None:
        log(f"resuming from {resume_from}")
    # The Trainer restores weights, optimizer, scheduler, RNG states and the position in the data order.
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    model = trainer.model
    best = trainer.state.best_metric
    info = {"metric": metric, "best_valid": best, "kept": "fine-tuned",
            "training_log": {"max_steps": trainer.state.max_steps, "best_metric": best,
                             "metric_for_best_model": metric, "log_history": trainer.state.log_history}}
    if before is not None:
        info["probe_valid"] = before
        if best is None or before <= best:
            model.load_state_dict(probe_state)
            info["kept"] = "probe"
        log(f"validation {metric.replace('_', ' ')}: probe {before:.4f}, best fine-tuned checkpoint "
            f"{'-' if best is None else f'{best:.4f}'}; keeping the {info['kept']} model")
    return model, info


def save_model_dir(output: Path, model, tokenizer, meta: dict) -> None:
    """Weights, config and tokenizer first, arenapref.json last: a directory with arenapref.json is complete. A
    model saved with --backbone-weights reference keeps every weight but the encoder's (meta["backbone_reference"]
    says where the encoder is)."""
    (output / META_FILE).unlink(missing_ok=True)
    state = None
    if meta.get("backbone_reference"):
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    model.save_pretrained(output, state_dict=state)
    tokenizer.save_pretrained(output)
    write_meta(output, meta)
