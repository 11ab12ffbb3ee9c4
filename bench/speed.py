"""Speed benchmark: the reference pipeline against ours, in one run, alternating, on real arena rows.

    python bench/speed.py [--rows N] [--model DIR] [--device cpu|cuda] [--low-precision int8|bf16|fp16]

Reference pipeline (what the reference design does): every side padded to max length (512), fixed batches of 8
rows in input order, one (2B, 512) encoder pass per batch. Ours: arenapref's predict path (sides encoded as
independent sequences sorted by length, token-budget batches, dynamic padding, on a CPU two encoder calls at once
on two worker threads, order restored) at the same max length with the same weights; plus the int8 dynamically
quantized model (CPU) or bf16 (CUDA). Training: a few optimizer steps of each pipeline on the same rows
(reference: random batches padded to 512, one pass; ours: length-grouped batches, dynamic padding, sides in
length-sorted sub-batches), alternating step by step.

Without --model the default backbone (all-MiniLM-L6-v2) is used with a head fitted for a moment on its pooled
features, so the predictions are not uniform and the int8 log-loss change means something. The last line printed
is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from arenapref.data.tables import load_frame  # noqa: E402
from arenapref.data.text import Renderer, TextSettings  # noqa: E402
from arenapref.evaluation.metrics import log_loss, softmax  # noqa: E402
from arenapref.inference.backend import model_features, predict_pairs, quantize_int8
from arenapref.inference.batching import (
    PairCollator,
    call_budget,
    default_workers,
    map_batches,
    pad_batch,
    token_budget_batches,
)
from arenapref.models.loading import pretrained  # noqa: E402
from arenapref.models.pooling import masked_mean  # noqa: E402
from arenapref.training.samplers import PairLengthSampler, pair_length_keys  # noqa: E402

DATA_CANDIDATES = [os.environ.get("ARENAPREF_DATA"), ROOT.parent / "shared" / "data", "/work/shared/data"]


# -- measuring ---------------------------------------------------------------------------------------------------

class PeakMemory:
    """Peak extra memory of a phase: CUDA's allocator peak, or on the CPU the process's resident set sampled every
    5 ms (freed heap is handed back to the OS first, so each phase starts from a fair baseline)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peaks: dict[str, float] = {}
        self._libc = ctypes.CDLL("libc.so.6") if platform.system() == "Linux" else None

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def measure(self, name: str, fn):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            result = fn()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() - base
        elif self._libc is not None and os.path.exists("/proc/self/statm"):
            self._libc.malloc_trim(0)
            base = self._rss()
            top = [base]
            done = threading.Event()

            def sample():
                while not done.wait(0.005):
                    top[0] = max(top[0], self._rss())

            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            try:
                result = fn()
            finally:
                done.set()
                thread.join()
            peak = max(top[0], self._rss()) - base
        else:
            return fn()
        self.peaks[name] = max(self.peaks.get(name, 0.0), peak / 2**20)
        return result


def timed(device: torch.device, fn):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


# -- the reference pipeline ------------------------------------------------------------------------------------------

@torch.no_grad()
def reference_predict(model, side_a, side_b, pad_id: int, max_length: int, device, batch_rows: int = 8,
                      features=None):
    """Every side padded to max_length, batches of 8 rows in input order, one (2B, L) encoder pass per batch
    (`features`: the rows' side features, for a model whose head reads them)."""
    model.eval()
    collate = PairCollator(pad_id, pad_to=max_length)
    logits = []
    for start in range(0, len(side_a), batch_rows):
        batch = collate([{"input_ids": pair} for pair in zip(side_a[start:start + batch_rows],
                                                             side_b[start:start + batch_rows])])
        ids = batch["input_ids"].to(device).view(-1, max_length)
        mask = batch["attention_mask"].to(device).view(-1, max_length)
        hidden = model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = masked_mean(hidden, mask).view(-1, 2, hidden.shape[-1])
        feats = None if features is None else torch.as_tensor(features[start:start + batch_rows])
        logits.append(model.head_logits(pooled, feats)[0].float().cpu().numpy())
    return np.concatenate(logits)


# -- model -----------------------------------------------------------------------------------------------------------

def load_model(args):
    from transformers import AutoTokenizer

    from arenapref.models.dual_tower import DualTowerModel

    if args.model:
        from arenapref.models.directory import read_meta

        meta = read_meta(args.model)
        if meta["model_type"] != "dual-tower":
            sys.exit(f"error: {args.model} is a {meta['model_type']} model; this benchmark measures the dual tower")
        model = pretrained(DualTowerModel, args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        settings = TextSettings.from_dict(meta.get("text", {}))
        settings.max_length = args.max_length
        return model, tokenizer, settings, f"{args.model} (trained)"
    from arenapref.models.loading import DEFAULT_BACKBONE, local_backbone

    backbone = local_backbone(DEFAULT_BACKBONE)
    torch.manual_seed(args.seed)
    model = DualTowerModel.from_backbone(backbone)
    return model, AutoTokenizer.from_pretrained(backbone), TextSettings(max_length=args.max_length), \
        "all-MiniLM-L6-v2 (pretrained) + head fitted on pooled features"


class CaptureHead(torch.nn.Module):
    """Stands in for the head to collect the (B, 2H) features it would see."""

    def __init__(self):
        super().__init__()
        self.features = []

    def forward(self, x):
        self.features.append(x.detach().float().cpu())
        return torch.zeros(x.shape[0], 3, dtype=x.dtype, device=x.device)


def fit_head(model, side_a, side_b, labels, pad_id, device, target: float = 0.95) -> tuple[float, float]:
    """Fit the classify head (multinomial logistic regression, L2) on the pooled sides of the benchmark rows.

    A few dozen rows in 768 dimensions are separable: an unregularised head would be absurdly confident
    (log loss near 0) and exaggerate any numeric change. The L2 weight is raised until the head is about as
    confident as a real trained model on this data (log loss about `target`; the best Kaggle models reach
    0.88-1.0). Runs our pipeline once over all rows, which also warms it up. Returns (log loss, L2 weight)."""
    real_head, capture = model.head, CaptureHead()
    model.head = capture
    try:
        predict_pairs(model, side_a, side_b, pad_id, device=device)
    finally:
        model.head = real_head
    x = torch.cat(capture.features).double()
    y = torch.tensor(np.asarray(labels), dtype=torch.long)

    def fit(l2: float):
        weight = torch.zeros(3, x.shape[1], dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * (weight ** 2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return weight.detach(), bias.detach(), float(torch.nn.functional.cross_entropy(x @ weight.T + bias, y))

    for l2 in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 0.3, 1.0, 3.0, 10.0):
        weight, bias, loss = fit(l2)
        if loss >= target:
            break
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight.dtype))
        model.head.bias.copy_(bias.to(model.head.bias.dtype))
    return loss, l2


# -- training --------------------------------------------------------------------------------------------------------

def train_steps(args, model, side_a, side_b, labels, pad_id, device, memory: PeakMemory, features=None):
    """`--train-steps` optimizer steps of each pipeline on the same rows, alternating step by step."""
    rows = args.train_steps * args.batch_size
    side_a, side_b, labels = side_a[:rows], side_b[:rows], labels[:rows]
    generator = torch.Generator().manual_seed(args.seed)
    reference_order = torch.randperm(rows, generator=generator).tolist()  # the Trainer's RandomSampler
    # Ours: the sampler train() uses, with one mega-batch over the rows (as on a training set of 50+ batches).
    ours_order = list(PairLengthSampler(args.batch_size, pair_length_keys(side_a, side_b), args.seed,
                                        mega_batch_mult=args.train_steps))
    pipelines = {
        "reference": (reference_order, PairCollator(pad_id, pad_to=args.max_length), 1),
        "ours": (ours_order, PairCollator(pad_id), model.side_chunks),
    }
    state = {}
    for name, (_, _, chunks) in pipelines.items():
        replica = copy.deepcopy(model).to(device).train()
        replica.side_chunks = chunks
        state[name] = {"model": replica, "opt": torch.optim.AdamW(replica.parameters(), lr=2e-5),
                       "seconds": 0.0, "real": 0, "padded": 0, "losses": []}

    def step(name, batch_rows):
        order, collate, _ = pipelines[name]
        s = state[name]
        batch = collate([{"input_ids": (side_a[i], side_b[i]), "labels": int(labels[i]),
                          **({} if features is None else {"features": features[i]})} for i in batch_rows])
        lengths = batch["attention_mask"].sum(-1)
        s["real"] += int(lengths.sum())
        if name == "ours":  # the forward pads each sub-batch to its own longest side (models/packing.py)
            from arenapref.models.packing import padded_tokens, plan_chunks

            flat = sorted(lengths.flatten().tolist(), reverse=True)
            s["padded"] += padded_tokens(flat, plan_chunks(flat, s["model"].side_chunks))
        else:
            s["padded"] += batch["attention_mask"].numel()
        out = s["model"](**{k: v.to(device) for k, v in batch.items()})
        out.loss.backward()
        s["opt"].step()
        s["opt"].zero_grad(set_to_none=True)
        s["losses"].append(float(out.loss.detach()))

    for k in range(args.train_steps):
        names = ["reference", "ours"] if k % 2 == 0 else ["ours", "reference"]
        for name in names:
            batch_rows = pipelines[name][0][k * args.batch_size:(k + 1) * args.batch_size]
            seconds, _ = timed(device, lambda: memory.measure(f"train_{name}", lambda: step(name, batch_rows)))
            state[name]["seconds"] += seconds
            print(f"  train step {k + 1}/{args.train_steps} {name:9s} {seconds:6.2f}s", flush=True)
    return {name: {"rows_per_s": rows / s["seconds"], "seconds": s["seconds"],
                   "real_token_share": s["real"] / s["padded"],
                   "mean_loss": float(np.mean(s["losses"]))} for name, s in state.items()}


# -- main ------------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=128, help="arena rows to score (a seeded random sample)")
    parser.add_argument("--data", default=None, help="Kaggle-format CSV (default ../shared/data/arena_sample.csv)")
    parser.add_argument("--model", default=None, help="a trained dual-tower model directory (default: MiniLM)")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=8, help="alternation rounds of the inference comparison")
    parser.add_argument("--train-steps", type=int, default=4, help="training steps per pipeline (0: skip)")
    parser.add_argument("--batch-size", type=int, default=8, help="training batch (rows)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--low-precision", default="auto", choices=["auto", "int8", "bf16", "fp16"],
                        help="the low-precision pipeline: auto = int8 on a CPU, bf16 (else fp16) on CUDA")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"error: --device {args.device}: torch sees no CUDA device here; use --device cpu")
    data = Path(args.data) if args.data else next(
        (Path(c) / "arena_sample.csv" for c in DATA_CANDIDATES if c and (Path(c) / "arena_sample.csv").exists()), None)
    if data is None or not data.exists():
        sys.exit("error: arena_sample.csv not found; pass --data or set ARENAPREF_DATA")
    wall = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"CPU, {torch.get_num_threads()} torch threads in {default_workers(device)} encoder workers, "
        f"{os.cpu_count()} cores")
    print(f"device: {hardware}; load average at start {load:.2f}")

    frame = load_frame(data, require_labels=True)
    frame = frame.sample(n=min(args.rows, len(frame)), random_state=args.seed).reset_index(drop=True)
    labels = frame["label"].to_numpy()
    model, tokenizer, settings, description = load_model(args)
    model = model.to(device).eval()
    pad_id = tokenizer.pad_token_id or 0
    features = model_features(model, frame)  # a head with side features (and a style term) reads them
    seconds, (side_a, side_b) = timed(device, lambda: Renderer(tokenizer, settings).dual_tower_inputs(frame))
    n = len(frame)
    real = sum(map(len, side_a)) + sum(map(len, side_b))
    reference_padded = 2 * n * args.max_length
    print(f"model: {description}; {n} rows of {data.name}, max length {args.max_length}, tokenised in {seconds:.1f}s")
    print(f"sides: median {np.median([len(s) for s in side_a + side_b]):.0f} tokens, "
          f"{np.mean([len(s) >= args.max_length for s in side_a + side_b]):.0%} at the max length; "
          f"padding bound (reference padded tokens / real tokens) {reference_padded / real:.2f}x")

    if not args.model:
        fitted, l2 = fit_head(model, side_a, side_b, labels, pad_id, device)
        print(f"head fitted on pooled features (warm-up pass): log loss {fitted:.4f} (L2 {l2:g})")
    else:
        predict_pairs(model, side_a[:8], side_b[:8], pad_id, device=device,
                      features=None if features is None else features[:8])  # warm-up

    # Work lists. Reference: fixed batches of 8 rows in input order. Ours: the plan predict_pairs makes (all 2N
    # sides sorted by their own length, cut by the token budget), run batch by batch through the same building
    # blocks (pad_batch, model.encode, model.head_logits) so the pipelines can alternate finely; the result is
    # checked against predict_pairs itself below. Our batches are shuffled so long and short ones spread over
    # the rounds, then each round's run longest first like predict_pairs (so the CPU workers finish together);
    # their order does not change any result.
    low_precision = args.low_precision if args.low_precision != "auto" else (
        "int8" if device.type == "cpu" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16"))
    needs = {"int8": "cpu", "fp16": "cuda"}.get(low_precision)
    if needs and device.type != needs:
        sys.exit(f"error: --low-precision {low_precision} runs on {needs} only, not {device.type}")
    if low_precision == "int8":
        low_model = quantize_int8(copy.deepcopy(model).cpu())
    else:
        low_model = copy.deepcopy(model).to(torch.bfloat16 if low_precision == "bf16" else torch.float16)
    models = {"ours": model, low_precision: low_model}
    sides = list(side_a) + list(side_b)
    side_lengths = np.array([len(s) for s in sides], dtype=np.int64)

    def our_plan(name):
        plan = token_budget_batches(side_lengths, call_budget(None, device, model=models[name]))
        return [plan[i] for i in np.random.default_rng(args.seed).permutation(len(plan))]

    def longest_first(batches):
        return sorted(batches, key=lambda idx: -len(idx) * int(side_lengths[idx].max()))

    plans = {"reference": [np.arange(s, min(s + 8, n)) for s in range(0, n, 8)], "ours": our_plan("ours"),
             low_precision: our_plan(low_precision)}
    names = list(plans)
    logits = {name: np.zeros((n, 3), dtype=np.float32) for name in names}
    pooled: dict = {}
    stats = {name: {"real_tokens": 0, "padded_tokens": 0} for name in names}

    def encode(name, idx):
        ids, mask = pad_batch([sides[i] for i in idx], pad_id)
        return idx, ids.numel(), models[name].encode(ids.to(device), mask.to(device))

    @torch.inference_mode()
    def run_ours(name, batches):
        for idx, numel, out in map_batches(lambda idx: encode(name, idx), batches, device):
            if name not in pooled:
                pooled[name] = torch.zeros((2 * n, out.shape[-1]), dtype=out.dtype, device=out.device)
            pooled[name][torch.as_tensor(idx, device=out.device)] = out
            stats[name]["real_tokens"] += int(side_lengths[idx].sum())
            stats[name]["padded_tokens"] += numel

    def run(name, batches):
        if name == "reference":
            for rows in batches:
                logits[name][rows] = reference_predict(model, [side_a[i] for i in rows], [side_b[i] for i in rows],
                                                       pad_id, args.max_length, device,
                                                       features=None if features is None else features[rows])
        else:
            run_ours(name, batches)

    memory = PeakMemory(device)
    seconds = {name: 0.0 for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # every pipeline takes every position in turn
        line = []
        for name in order:
            plan = plans[name]
            batches = plan[len(plan) * r // args.rounds:len(plan) * (r + 1) // args.rounds]
            batches = batches if name == "reference" else longest_first(batches)
            took, _ = timed(device, lambda: memory.measure(name, lambda: run(name, batches)))
            seconds[name] += took
            line.append(f"{name} {took:.1f}s ({len(batches)} batches)")
        print(f"  round {r + 1}/{args.rounds}: " + ", ".join(line), flush=True)
    for name in names[1:]:  # the head over the pooled sides, in row order
        def head(name=name):
            with torch.inference_mode():
                feats = None if features is None else torch.as_tensor(features)
                return models[name].head_logits(pooled[name].view(2, n, -1).transpose(0, 1),
                                                feats)[0].float().cpu().numpy()
        took, logits[name] = timed(device, head)
        seconds[name] += took
    stats["reference"] = {"real_tokens": real, "padded_tokens": reference_padded}
    check = predict_pairs(model, side_a[:16], side_b[:16], pad_id, device=device,
                          features=None if features is None else features[:16])[0]
    print(f"  benchmark's batch-by-batch run == predict_pairs: "
          f"max |logit diff| {np.abs(check - logits['ours'][:16]).max():.1e}")

    probs = {name: softmax(v) for name, v in logits.items()}
    pairs_per_s = {name: n / s for name, s in seconds.items()}
    max_diff = float(np.abs(probs["ours"] - probs["reference"]).max())
    losses = {name: log_loss(labels, p) for name, p in probs.items()}
    ours_share = stats["ours"]["real_tokens"] / stats["ours"]["padded_tokens"]
    result = {
        "device": hardware,
        "load_average_start": round(load, 2),
        "rows": n,
        "max_length": args.max_length,
        "model": description,
        "reference_pairs_per_s": round(pairs_per_s["reference"], 3),
        "ours_pairs_per_s": round(pairs_per_s["ours"], 3),
        f"{low_precision}_pairs_per_s": round(pairs_per_s[low_precision], 3),
        "inference_speedup": round(seconds["reference"] / seconds["ours"], 3),
        f"inference_speedup_{low_precision}": round(seconds["reference"] / seconds[low_precision], 3),
        f"{low_precision}_over_fp32": round(seconds["ours"] / seconds[low_precision], 3),
        "real_token_share": round(ours_share, 4),
        "reference_real_token_share": round(real / reference_padded, 4),
        "padding_bound": round(reference_padded / real, 3),
        "max_abs_prob_diff": max_diff,
        "log_loss_fp32": round(losses["ours"], 5),
        f"log_loss_{low_precision}": round(losses[low_precision], 5),
        f"log_loss_change_{low_precision}": round(losses[low_precision] - losses["ours"], 5),
        f"max_abs_prob_diff_{low_precision}": float(np.abs(probs[low_precision] - probs["ours"]).max()),
    }
    if low_precision != "int8":
        result["inference_speedup_int8"] = None  # dynamic int8 quantization is a CPU feature

    print(f"\ninference ({n} pairs, alternating over {args.rounds} rounds):")
    for name in names:
        share = stats[name]["real_tokens"] / stats[name]["padded_tokens"]
        print(f"  {name:9s} {pairs_per_s[name]:7.2f} pairs/s  real-token share {share:.3f}  "
              f"peak extra memory {memory.peaks.get(name, float('nan')):7.1f} MiB  log loss {losses[name]:.4f}")
    print(f"  speedup ours/reference {result['inference_speedup']:.2f}x "
          f"(padding bound {result['padding_bound']:.2f}x), "
          f"{low_precision} {result[f'inference_speedup_{low_precision}']:.2f}x "
          f"({result[f'{low_precision}_over_fp32']:.2f}x over ours fp32)")
    print(f"  max |p_ours - p_reference| = {max_diff:.2e} ({'OK' if max_diff < 1e-4 else 'ABOVE'} 1e-4); "
          f"{low_precision} log loss change {result[f'log_loss_change_{low_precision}']:+.5f}, "
          f"max |p_{low_precision} - p_fp32| = {result[f'max_abs_prob_diff_{low_precision}']:.2e}")
    for name in names:
        result[f"peak_memory_mib_{name}"] = round(memory.peaks.get(name, float("nan")), 1)

    if args.train_steps > 0:
        print(f"\ntraining ({args.train_steps} steps x {args.batch_size} rows per pipeline, same rows, alternating):")
        training = train_steps(args, model, side_a, side_b, labels, pad_id, device, memory, features)
        for name, t in training.items():
            print(f"  {name:9s} {t['rows_per_s']:6.2f} rows/s  real-token share {t['real_token_share']:.3f}  "
                  f"peak extra memory {memory.peaks.get(f'train_{name}', float('nan')):7.1f} MiB")
        result["training_speedup"] = round(training["reference"]["seconds"] / training["ours"]["seconds"], 3)
        result["training_real_token_share"] = round(training["ours"]["real_token_share"], 4)
        result["training_reference_real_token_share"] = round(training["reference"]["real_token_share"], 4)
        result["training_rows_per_s"] = {k: round(v["rows_per_s"], 3) for k, v in training.items()}
        result["peak_memory_mib_train"] = {k: round(memory.peaks.get(f"train_{k}", float("nan")), 1) for k in training}
        print(f"  training speedup {result['training_speedup']:.2f}x")
    else:
        result["training_speedup"] = None
    result["load_average_end"] = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
