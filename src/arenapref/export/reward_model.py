"""`arenapref export`: a rank-objective model as a scalar reward model that plain Hugging Face tools load.

The exported directory needs transformers and torch, not arenapref:

* llm family (`--model llm --objective rank`): the merged `*ForSequenceClassification` with `num_labels=1` and the
  pad token set, the checkpoint TRL's RewardTrainer, OpenRLHF and vLLM's reward API load.
* dual tower (`--model dual-tower --objective rank --no-head-features`): the encoder plus mean pooling and the
  linear score head, in `modeling_arenapref_reward.py` (a copy of reward_modeling.py) registered in config.json's
  `auto_map`: `AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)`. A head that also
  reads the hand-made side features (the default) cannot be rebuilt from token ids alone, so such a model is
  refused with a line saying to retrain with --no-head-features.

The exported score is exactly `Judge.score_responses` (and `predict --scores`): the head's score with the score
scale and the calibration temperature folded into its weights. config.json's `arenapref` entry records the
Davidson tie weight on that scale (P(tie) ∝ ν e^{(s_A+s_B)/2}, `davidson_log_nu`), the text settings and the
source model. The same scores need the same token ids: `render.py` (a copy of text.py plus two helpers) renders
(prompt, response) exactly as arenapref does, token budget included; the plain-text template (`User:` prompt
`Assistant:` response per turn) gives the same ids only when no field is cut and the tokenizer does not merge
across the field boundaries.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

from arenapref.data import text
from arenapref.data.tables import check_output_dir, current_umask
from arenapref.errors import DataError
from arenapref.models import MODELS
from arenapref.models.directory import check_model_dir

MODELING_FILE = "modeling_arenapref_reward.py"
RENDER_FILE = "render.py"
TEMPLATE = ("User:{prompt}Assistant:{response}, for each turn (after the tokenizer's start token, if any); a tokenizer "
            "that splits on spaces and punctuation (BERT's WordPiece) gives the same ids with spaces between the parts")

RENDER_HELPERS = '''

# -- added by `arenapref export` ------------------------------------------------------------------------------------
def load_renderer(model_dir):
    """The tokenizer and Renderer the model was trained with (text settings from config.json's "arenapref")."""
    import json
    import os

    from transformers import AutoTokenizer

    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as fh:
        settings = json.load(fh)["arenapref"]["text"]
    # AutoTokenizer reads config.json, whose auto_map (a dual tower's export) names this folder's model code.
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    return Renderer(tokenizer, TextSettings.from_dict(settings))


def side_ids(renderer, prompt, response):
    """Token ids of one response to a prompt (strings, or equal-length lists of turns), as arenapref renders them."""
    as_turns = lambda x: [x] if isinstance(x, str) else ["" if t is None else t for t in x]
    prompt, response = as_turns(prompt), as_turns(response)
    if len(prompt) != len(response):
        raise ValueError(f"prompt has {len(prompt)} turns, response {len(response)}; give one response per turn")
    prompt_ids, response_ids = renderer.tokenize_turn_lists([prompt, response])
    return renderer.side(prompt_ids, response_ids)


def reward_scores(model, renderer, prompts, responses):
    """One reward per (prompt, response): right-padded batch, the model's logits[:, 0]."""
    import torch

    sides = [side_ids(renderer, p, r) for p, r in zip(prompts, responses)]
    pad = renderer.tokenizer.pad_token_id or 0
    width = max(len(s) for s in sides)
    ids = torch.full((len(sides), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sides), width), dtype=torch.long)
    for i, s in enumerate(sides):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits[:, 0].tolist()
'''


def exportable_meta(model_dir: Path) -> dict:
    """The model's arenapref.json, or a one-line error when it has no per-response score to export."""
    meta = check_model_dir(model_dir)
    family, objective = meta["model_type"], meta.get("objective", "classify")
    how = ("train --model llm --objective rank, or --model dual-tower --objective rank --no-head-features")
    if family in ("gbdt", "hybrid", "cross-encoder") or objective != "rank":
        kind = {"gbdt": "a gbdt (3-way classifier on features of both responses)",
                "hybrid": "a hybrid (3-way probabilities averaged over a neural model and a gbdt)",
                "cross-encoder": "a cross-encoder (reads both responses at once)"}.get(
            family, f"a 3-way {family} classifier (objective {objective})")
        raise DataError(f"{model_dir}: {kind} has no per-response score to export as a reward model; {how}")
    if family == "dual-tower" and meta.get("head_features", True):
        raise DataError(f"{model_dir}: this dual tower's rank head also reads hand-made side features of the text, "
                        "which a plain Hugging Face model cannot compute; retrain it with --objective rank "
                        "--no-head-features to export it")
    return meta


def export_reward_model(model_dir: str | Path, output: str | Path) -> dict:
    """Write the reward model; returns a summary (architecture, files, Davidson tie weight, temperature)."""
    model_dir, output = Path(model_dir), Path(output)
    meta = exportable_meta(model_dir)
    check_output_dir(output)
    if output.exists() and any(output.iterdir()):  # the model directory itself among them
        raise DataError(f"{output}: exists and is not empty; choose a new directory for the export")
    recipe = MODELS[meta["model_type"]].load_recipe("rank")
    model = recipe.load(model_dir, meta).eval()
    tokenizer = recipe.tokenizer(model_dir)
    temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
    record = {"source": str(model_dir), "family": meta["model_type"], "backbone": meta.get("backbone"),
              "temperature": temperature, "text": meta.get("text", {}), "template": TEMPLATE,
              "score": "the response's reward on the Davidson logit scale: log P(i beats j) / P(j beats i) = s_i - "
                       "s_j; equals arenapref's Judge.score_responses"}
    # Written into a temporary folder beside OUTPUT and renamed at the end: a failed export leaves nothing behind.
    output.parent.mkdir(parents=True, exist_ok=True)
    final, output = output, Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        summary = _write_export(model, tokenizer, meta, record, temperature, output, final)
    except BaseException:
        shutil.rmtree(output, ignore_errors=True)
        raise
    # Plain writes inside the temporary folder: every file is fsynced here, before the rename makes it visible.
    for path in output.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    if final.exists():
        final.rmdir()  # empty (checked above)
    os.chmod(output, 0o777 & ~current_umask())
    os.replace(output, final)
    return summary


def _write_export(model, tokenizer, meta: dict, record: dict, temperature: float, output: Path, final: Path) -> dict:
    import torch

    with torch.no_grad():
        if meta["model_type"] == "llm":
            classifier = model.classifier
            classifier.score.weight.div_(temperature)
            if getattr(classifier.score, "bias", None) is not None:
                classifier.score.bias.div_(temperature)
            log_nu = float(model.log_nu) / temperature
            classifier.config.pad_token_id = tokenizer.pad_token_id
            classifier.config.davidson_log_nu = log_nu
            classifier.config.arenapref = {**record, "davidson_log_nu": log_nu}
            classifier.save_pretrained(output)
            architecture = classifier.config.architectures[0]
        else:
            log_nu = float(model.log_nu) / temperature
            scale = float(model.link_scale) / temperature
            state = {f"encoder.{k}": v.detach().contiguous().clone() for k, v in model.encoder.state_dict().items()}
            state["score.weight"] = (model.head.weight * scale).detach().contiguous().clone()
            state["score.bias"] = (model.head.bias * scale).detach().contiguous().clone()
            from safetensors.torch import save_file

            save_file(state, str(output / "model.safetensors"), metadata={"format": "pt"})
            architecture = "ArenaprefRewardModel"
            module = MODELING_FILE[:-3]
            config = {"model_type": "arenapref_reward_encoder", "architectures": [architecture],
                      "auto_map": {"AutoConfig": f"{module}.ArenaprefRewardConfig",
                                   "AutoModel": f"{module}.ArenaprefRewardModel",
                                   "AutoModelForSequenceClassification": f"{module}.ArenaprefRewardModel"},
                      "encoder": model.config.encoder, "num_labels": 1, "id2label": {"0": "reward"},
                      "label2id": {"reward": 0}, "pad_token_id": tokenizer.pad_token_id,
                      "davidson_log_nu": log_nu, "arenapref": {**record, "davidson_log_nu": log_nu}}
            (output / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
            from arenapref.export import reward_modeling  # imports torch; `arenapref --help` imports this module

            shutil.copyfile(inspect.getsourcefile(reward_modeling), output / MODELING_FILE)
    tokenizer.save_pretrained(output)
    (output / RENDER_FILE).write_text(Path(inspect.getsourcefile(text)).read_text(encoding="utf-8") + RENDER_HELPERS,
                                      encoding="utf-8")
    summary = {"output": str(final), "architecture": architecture, "num_labels": 1,
               "trust_remote_code": meta["model_type"] != "llm", "davidson_log_nu": log_nu,
               "temperature": temperature}
    (output / "README.md").write_text(reward_card(summary, record), encoding="utf-8")
    return summary


def reward_card(summary: dict, record: dict) -> str:
    remote = ", trust_remote_code=True" if summary["trust_remote_code"] else ""
    return "\n".join([
        "---",
        "tags: [reward-model, preference-model, arenapref]",
        "---",
        "",
        f"# Reward model exported by arenapref ({record['family']}, rank objective)",
        "",
        f"`{summary['architecture']}` with one output: the reward of a (prompt, response). Source: "
        f"`{record['source']}` (backbone `{record['backbone']}`). Loads with transformers alone:",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        f'model = AutoModelForSequenceClassification.from_pretrained("{summary["output"]}"{remote})',
        f'tokenizer = AutoTokenizer.from_pretrained("{summary["output"]}"{remote})',
        "```",
        "",
        "Scores are on the Davidson logit scale: log P(i beats j) / P(j beats i) = s_i - s_j, and with the tie weight "
        f"log ν = {summary['davidson_log_nu']:.4f} (config.json `davidson_log_nu`) P(tie) ∝ ν e^((s_i+s_j)/2). They "
        "equal arenapref's `Judge.score_responses` on the same token ids (calibration temperature "
        f"{summary['temperature']:.4f} folded into the head).",
        "",
        "Exact token ids, truncation included (`render.py` in this directory, no arenapref needed):",
        "",
        "```python",
        "import sys",
        f'sys.path.insert(0, "{summary["output"]}")',
        "import render",
        f'renderer = render.load_renderer("{summary["output"]}")',
        'render.reward_scores(model, renderer, ["What is 2+2?"], ["4"])',
        "```",
        "",
        f"Plain text: `{record['template']}`. This gives the same ids when no field is cut to the token budget "
        f"({record['text'].get('max_length')} tokens) and the tokenizer does not merge across the field boundaries.",
        "",
    ])
