"""An HTML report on how far to trust a judge on a labelled file: index.html plus PNG figures.

Sections: metrics before/after calibration, reliability diagram, confusion matrix, log loss by conversation length
and by turn count, position bias (the same rows with A and B swapped), and the worst-predicted rows.
Only needs `judge.predict_proba(frame)` and `judge.temperature`, so it works for every model family.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.data.swap import swap_columns, swap_frame
from arenapref.data.tables import write_text_atomic
from arenapref.errors import DataError
from arenapref.evaluation.calibration import fit_temperature
from arenapref.evaluation.figures import pyplot, save_figure
from arenapref.evaluation.metrics import CLASS_NAMES, classification_metrics, softmax

CLASS_TITLES = ("A wins", "B wins", "tie")


def describe(meta: dict) -> str:
    """One line naming a model's family and backbone, and for a hybrid every part's: the report's header."""
    def one(info: dict) -> str:
        family = info.get("model_type", "?")
        details = [info["objective"]] if info.get("objective") not in (None, "classify") else []
        if info.get("backbone"):
            details.append(f"backbone {info['backbone']}")
        return family + (f" ({', '.join(details)})" if details else "")

    parts = meta.get("parts")
    if isinstance(parts, dict) and parts:
        return f"{meta.get('model_type', '?')}: " + " + ".join(
            f"{one(part)} x {part.get('weight', 0):g}" for part in parts.values() if isinstance(part, dict))
    return one(meta)


def row_log_loss(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1.0))


# -- figures -----------------------------------------------------------------------------------------------------
def reliability_figure(labels, curves: dict[str, np.ndarray], path, bins: int = 10) -> None:
    """Top-label reliability: accuracy against confidence, per equal-width confidence bin, for each curve."""
    fig, (ax, hist) = pyplot().subplots(2, 1, figsize=(5.5, 6), height_ratios=(3, 1), sharex=True)
    edges = np.linspace(1 / 3, 1.0, bins + 1)  # a 3-way top label is never below 1/3 confident
    ax.plot([1 / 3, 1], [1 / 3, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for name, probs in curves.items():
        conf = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            mask = which == b
            if mask.any():
                xs.append(conf[mask].mean())
                ys.append(correct[mask].mean())
        ax.plot(xs, ys, marker="o", label=name)
        hist.hist(conf, bins=edges, alpha=0.5, label=name)
    ax.set_ylabel("accuracy of the top label")
    ax.set_ylim(0, 1)
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8)
    hist.set_xlabel("confidence (probability of the top label)")
    hist.set_ylabel("rows")
    fig.tight_layout()
    save_figure(fig, path)


def confusion_figure(matrix: np.ndarray, path) -> None:
    fig, ax = pyplot().subplots(figsize=(4.8, 4.2))
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            ax.text(j, i, f"{matrix[i, j]}\n{shares[i, j]:.0%}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(3), CLASS_TITLES)
    ax.set_yticks(range(3), CLASS_TITLES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("Confusion matrix (row shares)")
    fig.tight_layout()
    save_figure(fig, path)


def grouped_loss_figure(groups: pd.DataFrame, xlabel: str, title: str, prior: float, path) -> None:
    """Bars of mean log loss per group, with the row count on each bar and the constant-prior loss as a line."""
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    bars = ax.bar(groups["group"].astype(str), groups["log_loss"], color="#4c72b0")
    for bar, n in zip(bars, groups["rows"]):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"n={n}", ha="center", va="bottom", fontsize=8)
    ax.axhline(prior, color="#dd8452", ls="--", lw=1, label=f"constant prior ({prior:.3f})")
    # Differences between groups are small next to the loss itself: zoom on them rather than start at 0.
    top = max(groups["log_loss"].max(), prior)
    bottom = min(groups["log_loss"].min(), prior)
    ax.set_ylim(max(0.0, bottom - 0.25 * (top - bottom) - 0.02), top + 0.15 * (top - bottom) + 0.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean log loss")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def position_bias_figure(p_a: np.ndarray, p_a_swapped: np.ndarray, path) -> None:
    fig, ax = pyplot().subplots(figsize=(4.6, 4.4))
    ax.scatter(p_a, p_a_swapped, s=8, alpha=0.5)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set_xlabel("P(first response wins), shown as A")
    ax.set_ylabel("P(same response wins), shown as B")
    ax.set_title("Position bias: each row judged both ways")
    lo = min(p_a.min(), p_a_swapped.min(), 0.3) - 0.02
    hi = max(p_a.max(), p_a_swapped.max(), 0.4) + 0.02
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    fig.tight_layout()
    save_figure(fig, path)


def learning_curve_figure(campaign: dict, path) -> None:
    """Held-out log loss against labels used, one line per strategy (mean over seeds, band: +- one standard error
    of that mean), with
    the baseline's final log loss (the target every strategy is asked to reach) as a dashed line."""
    fig, ax = pyplot().subplots(figsize=(7, 4.4))
    seeds = len(next(iter(campaign["strategies"].values()))["log_loss_per_seed"])
    for name, curve in campaign["strategies"].items():
        x = np.asarray(curve["labels"], dtype=float)
        mean = np.asarray(curve["log_loss_mean"])
        std = np.asarray(curve["log_loss_std"]) / np.sqrt(max(seeds, 1))  # the standard error of the mean
        style = {"color": "black", "lw": 2.2} if name == "random" else {"lw": 1.4}
        line, = ax.plot(x, mean, marker="o", ms=3, label=name, **style)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.08)
    target = campaign.get("target_log_loss")
    if target is not None:
        ax.axhline(target, color="grey", ls="--", lw=1, label=f"random's final ({target:.4f})")
    ax.set_xlabel("labelled battles")
    ax.set_ylabel("held-out log loss")
    ax.set_title(f"Learning curves ({campaign.get('family', 'gbdt')}, mean of {seeds} seeds, band: +- 1 s.e.)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


# -- tables ------------------------------------------------------------------------------------------------------
def loss_by(values: np.ndarray, losses: np.ndarray, edges: list[float], names: list[str]) -> pd.DataFrame:
    which = np.digitize(values, edges[1:-1], right=True)
    rows = [{"group": name, "rows": int((which == k).sum()),
             "log_loss": float(losses[which == k].mean()) if (which == k).any() else float("nan")}
            for k, name in enumerate(names)]
    return pd.DataFrame([r for r in rows if r["rows"] > 0])


def length_groups(chars: np.ndarray, losses: np.ndarray, bins: int = 5) -> pd.DataFrame:
    """Quantile bins of conversation length (characters of prompt + both responses)."""
    edges = np.unique(np.quantile(chars, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        edges = np.array([chars.min(), chars.max()])
    names = [f"{int(lo):,}-{int(hi):,}" for lo, hi in zip(edges[:-1], edges[1:])]
    return loss_by(chars, losses, list(edges), names)


def turn_groups(turns: np.ndarray, losses: np.ndarray) -> pd.DataFrame:
    return loss_by(turns, losses, [0, 1, 2, 3, math.inf], ["1", "2", "3", "4+"])


def _esc(value, limit: int = 400) -> str:
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + " [...]"
    return html.escape(text)


def _turns_text(turns: list[str]) -> str:
    return "\n---\n".join(turns) if len(turns) > 1 else (turns[0] if turns else "")


def metrics_html(columns: dict[str, dict]) -> str:
    names = list(columns)
    rows = [("rows", "n", "{:d}"), ("log loss", "log_loss", "{:.4f}"),
            ("constant-prior log loss", "prior_log_loss", "{:.4f}"), ("accuracy", "accuracy", "{:.4f}"),
            ("precision (macro)", "precision_macro", "{:.4f}"), ("recall (macro)", "recall_macro", "{:.4f}"),
            ("F1 (macro)", "f1_macro", "{:.4f}"), ("expected calibration error", "ece", "{:.4f}")]
    rows += [(f"F1 {title}", f"f1_{name}", "{:.4f}") for name, title in zip(CLASS_NAMES, CLASS_TITLES)]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(f"<tr><td>{label}</td>" + "".join(f"<td>{fmt.format(columns[n][key])}</td>" for n in names)
                   + "</tr>" for label, key, fmt in rows)
    return f"<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def worst_rows_html(frame: pd.DataFrame, probs: np.ndarray, losses: np.ndarray, count: int) -> str:
    order = np.argsort(-losses, kind="stable")[:count]
    rows = []
    for i in order:
        row = frame.iloc[i]
        p = probs[i]
        rows.append(
            f"<tr><td>{_esc(row['id'], 60)}</td><td>{CLASS_TITLES[row['label']]}</td>"
            f"<td>{p[0]:.3f} / {p[1]:.3f} / {p[2]:.3f}</td><td>{losses[i]:.3f}</td>"
            f"<td class='text'>{_esc(_turns_text(row['prompt']))}</td>"
            f"<td class='text'>{_esc(_turns_text(row['response_a']))}</td>"
            f"<td class='text'>{_esc(_turns_text(row['response_b']))}</td></tr>")
    return ("<table class='rows'><thead><tr><th>id</th><th>true</th><th>P(A) / P(B) / P(tie)</th><th>log loss</th>"
            "<th>prompt</th><th>response A</th><th>response B</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>")


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; padding: 0 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; text-align: right; vertical-align: top; }
th { background: #f3f3f3; }
td.text { text-align: left; white-space: pre-wrap; max-width: 22rem; font-size: 0.8rem; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
img { max-width: calc(50% - 0.5rem); box-sizing: border-box; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9rem; }
"""


def model_sections(judge, frame: pd.DataFrame, output: Path, model_name: str, data_name: str, worst: int,
                   probs: np.ndarray) -> str:
    """Predict `frame` (labelled, normalised; `probs` the judge's predictions as given) swapped too, draw the
    figures; the page's model sections."""
    labels = frame["label"].to_numpy()
    swapped = swap_columns(judge.predict_proba(swap_frame(frame)))  # back in the original A/B order
    stored_t = float(getattr(judge, "temperature", 1.0))
    log_probs = np.log(np.clip(probs, 1e-15, 1.0))  # logits of the model's output, up to a constant per row
    raw = softmax(log_probs, 1.0 / stored_t)  # undo the stored temperature: softmax(T * log p)
    if abs(stored_t - 1.0) > 1e-9:
        after, after_t = probs, stored_t
        note = (f"The model stores a calibration temperature T = {stored_t:.3f} (arenapref.json "
                "calibration.temperature); 'after' is the model's own output, 'before' undoes it.")
    else:
        after_t = fit_temperature(log_probs, labels)
        after = softmax(log_probs, after_t)
        note = (f"The model has no stored calibration (temperature 1), so its output is the 'before' column. The "
                f"'after' column uses a temperature fitted on this same data (T = {after_t:.3f}): an optimistic "
                "preview of what `calibration` would give, not a held-out result.")
    before_metrics = classification_metrics(labels, raw)
    after_metrics = classification_metrics(labels, after)
    losses = row_log_loss(labels, probs)
    prior = before_metrics["prior_log_loss"]

    reliability_figure(labels, {"before calibration": raw, f"after (T = {after_t:.2f})": after},
                       output / "reliability.png")
    confusion_figure(np.asarray(classification_metrics(labels, probs)["confusion"]), output / "confusion.png")
    chars = np.array([sum(len(t) for col in ("prompt", "response_a", "response_b") for t in row[col])
                      for _, row in frame.iterrows()])
    turns = frame["prompt"].map(len).to_numpy()
    by_length = length_groups(chars, losses)
    by_turns = turn_groups(turns, losses)
    grouped_loss_figure(by_length, "conversation length (characters, quantile bins)", "Log loss by length",
                        prior, output / "loss_by_length.png")
    grouped_loss_figure(by_turns, "turns in the conversation", "Log loss by turn count", prior,
                        output / "loss_by_turns.png")
    position_bias_figure(probs[:, 0], swapped[:, 0], output / "position_bias.png")

    agreement = float((probs.argmax(axis=1) == swapped.argmax(axis=1)).mean())
    mean_shift = float(np.abs(probs - swapped).mean())
    favour_a = float((probs[:, 0] - probs[:, 1]).mean())
    favour_a_swapped = float((swapped[:, 0] - swapped[:, 1]).mean())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    meta = getattr(judge, "meta", {}) or {}
    return f"""<p>Model <code>{_esc(model_name, 300)}</code> ({_esc(describe(meta), 400)})
on <code>{_esc(data_name, 300)}</code>: {len(frame)} labelled rows. Written {stamp}.</p>

<h2>Metrics</h2>
{metrics_html({"before calibration": before_metrics, "after calibration": after_metrics})}
<p class="note">{html.escape(note)}</p>

<h2>Calibration and errors</h2>
<div class="figures">
<img src="reliability.png" alt="Reliability diagram before and after calibration">
<img src="confusion.png" alt="Confusion matrix">
</div>

<h2>Where the model struggles</h2>
<div class="figures">
<img src="loss_by_length.png" alt="Log loss by conversation length">
<img src="loss_by_turns.png" alt="Log loss by turn count">
</div>

<h2>Position bias</h2>
<p>Every row was judged twice: as given, and with responses A and B swapped (the swapped prediction mapped back).
The top label agrees on <b>{agreement:.1%}</b> of rows; probabilities move by {mean_shift:.4f} on average.
Mean P(A) &minus; P(B): {favour_a:+.4f} as given, {favour_a_swapped:+.4f} from the swapped input
(a judge without position bias gives the same number both ways).</p>
<div class="figures"><img src="position_bias.png" alt="Position bias scatter"></div>

<h2>Worst-predicted rows</h2>
<p class="note">The {min(worst, len(frame))} rows with the highest log loss (texts cut at 400 characters; turns
separated by ---).</p>
{worst_rows_html(frame, probs, losses, worst)}
"""


# -- a selection campaign (bench/active.py --output DIR) ----------------------------------------------------------
CAMPAIGN_FILE = "campaign.json"


def load_campaign(path) -> dict:
    """campaign.json of a bench/active.py --output directory (or the file itself), checked for what we draw."""
    path = Path(path)
    file = path / CAMPAIGN_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"{path}: no {CAMPAIGN_FILE}; pass the --output directory of `python bench/active.py`")
    try:
        campaign = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not valid JSON ({exc}); rerun bench/active.py --output") from None
    ok = (isinstance(campaign, dict) and campaign.get("kind") == "arenapref-active-campaign"
          and isinstance(campaign.get("strategies"), dict) and "random" in campaign["strategies"])
    if ok:
        for curve in campaign["strategies"].values():
            keys = ("labels", "log_loss_mean", "log_loss_std", "log_loss_per_seed")
            ok = ok and isinstance(curve, dict) and all(k in curve for k in keys) and len(curve["labels"]) == len(
                curve["log_loss_mean"]) == len(curve["log_loss_std"]) > 0
    if not ok:
        raise DataError(f"{file}: not a campaign written by bench/active.py (needs kind arenapref-active-campaign "
                        "and learning curves including random's); rerun it")
    return campaign


def campaign_section(campaign: dict, output: Path) -> str:
    """The learning-curve figure and the labels each strategy saves against random."""
    learning_curve_figure(campaign, output / "learning_curves.png")
    saved = campaign.get("labels_saved_vs_random", {})
    needed = campaign.get("labels_needed", {})
    rows = []
    for name, curve in campaign["strategies"].items():
        need, save = needed.get(name), saved.get(name)
        rows.append(f"<tr><td>{_esc(name, 60)}</td><td>{curve['log_loss_mean'][-1]:.4f}</td>"
                    f"<td>{'not reached' if need is None else f'{need:.0f}'}</td>"
                    f"<td>{'&ndash;' if save is None else f'{save:+g}'}</td></tr>")
    target = campaign.get("target_log_loss")
    seeds = len(next(iter(campaign["strategies"].values()))["log_loss_per_seed"])
    return f"""<h2>Choosing battles to label</h2>
<p>A simulated annotation campaign ({_esc(campaign.get('family', 'gbdt'), 40)}, {seeds} seeds): from
{campaign.get('seed_size', '?')} random labels, batches of {campaign.get('batch_size', '?')} chosen by each strategy
up to {campaign.get('budget', '?')} labels, scored on a fixed prompt-grouped held-out part of
{campaign.get('heldout_rows', '?')} battles (pool {campaign.get('pool_rows', '?')}). Target: random's final held-out
log loss{'' if target is None else f' {target:.4f}'}; labels needed are interpolated on the curves averaged over
seeds.</p>
<div class="figures"><img src="learning_curves.png" alt="Learning curves per selection strategy"></div>
<table><thead><tr><th>strategy</th><th>final log loss</th><th>labels to reach random's final</th>
<th>labels saved vs random</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
"""


def write_report(judge, frame: pd.DataFrame | None, output, model_name: str = "", data_name: str = "",
                 worst: int = 20, campaign: dict | None = None,
                 more: Callable[[pd.DataFrame, np.ndarray, Path], str] | None = None) -> Path:
    """output/index.html with the model sections (a judge and a labelled, normalised frame) and / or the
    learning curves of a selection campaign (`load_campaign`); `more(frame, probabilities, output)` adds a section
    from the judge's predictions (the leaderboards: ratings/report.py, a layer above this one)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    body = ""
    if judge is not None:
        probs = judge.predict_proba(frame)  # what the model returns: its stored calibration applied
        body += model_sections(judge, frame, output, model_name, data_name, worst, probs)
        if more is not None:
            body += more(frame, probs, output)
    if campaign is not None:
        body += campaign_section(campaign, output)
    title = model_name or ("selection campaign" if campaign is not None else "")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>arenapref report: {_esc(title, 200)}</title>
<style>{STYLE}</style></head><body>
<h1>arenapref report</h1>
{body}</body></html>
"""
    path = output / "index.html"
    write_text_atomic(page, path)
    return path
