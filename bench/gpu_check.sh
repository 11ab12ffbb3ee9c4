#!/usr/bin/env bash
# The GPU check: every CUDA path of arenapref once, on one card, in about 6 minutes on an H200 (docs/benchmarks.md,
# "GPU check"). Run from the repository root after `bash bench/gpu_prepare.sh` has filled .gpu/:
#
#     OUT=/some/folder bash bench/gpu_check.sh
#     SMALL=1 PY=.venv/bin/python OUT=/tmp/gpu-dry bash bench/gpu_check.sh    # CPU dry run, tiny shapes
#
# Writes to $OUT: results.tsv (step, rc, seconds, losses finite|nan|-, final training loss, log loss, peak GPU
# memory), log.txt (every step's command and output), json_lines.txt (step, then the JSON line that evaluate --json
# and bench/speed.py print), env.json (device, torch / CUDA / nccl / transformers / accelerate / peft versions and
# the pyproject requirements the machine does not meet) and nvidia-smi.txt. A step that fails is recorded and the
# next one runs; the steps run most important first, each under min(STEP_S, what is left of BUDGET_S), and those
# with under 15 s left are recorded "skipped", so the whole run ends inside BUDGET_S (+10 s) and the files come back
# inside the device tool's limit. On a CPU the CUDA-only steps (--fp16, --dtype fp16, speed.py --device cuda) fail
# cleanly with a one-line error, as they should, and the steps after them use the bf16-trained model instead.
#
# Env: OUT; G (default .gpu: the package at one commit, data, tokenizer, wheels, from gpu_prepare.sh); SMALL=1; PY
# (default python3); STEP_S (one step's limit, default 150); BUDGET_S (the whole run, default 420 s); ONLY="step
# step" (those steps only: on a machine still warm they reuse the models trained in $W, on a fresh one the data and
# backbones are made first); W (default /tmp/arenapref-gpu).
# ROWS / HROWS / DDP_ROWS (training, holdout and torchrun rows: 999 / 300 / 400); ROUNDS (speed.py's, 3).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
G=${G:-$ROOT/.gpu}
OUT=${OUT:-/tmp/gpu-out}
W=${W:-/tmp/arenapref-gpu}
SMALL=${SMALL:-0}
PY=${PY:-python3}
T0=$(date +%s)
mkdir -p "$OUT"
if [ -n "${ONLY:-}" ] && [ ! -f "$W/train.csv" ]; then
  # a fresh machine: the data, the wheels and the backbones first, then the steps asked for (an evaluate step needs
  # its training step named too)
  FRESH=1 ONLY="env backbones $ONLY"
fi
[ -n "${ONLY:-}" ] && [ -z "${FRESH:-}" ] || rm -rf "$W"
mkdir -p "$W/logs"
LOG=$OUT/log.txt RES=$OUT/results.tsv JSONL=$OUT/json_lines.txt
if [ -z "${ONLY:-}" ] || [ ! -f "$RES" ]; then
  : > "$LOG"; : > "$JSONL"
  printf "step\trc\tseconds\tlosses\tfinal_train_loss\tlog_loss\tpeak_gpu_mib\n" > "$RES"
fi

# The package at the commit gpu_prepare.sh archived (else this checkout's), the data, the tokenizer.
if [ -d "$G/arenapref/src" ]; then PKG=$G/arenapref; else PKG=$ROOT; fi
BENCH=$PKG/bench CONF=$PKG/configs
COMMIT=$(cat "$G/COMMIT" 2>/dev/null || git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
D=${D:-$G/data/arena_sample.csv} H=${H:-$G/data/holdout.csv}
TOK=${TOK:-$G/tok}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
export ARENAPREF_CACHE=$W/cache

if [ "$SMALL" = 1 ]; then
  ROUNDS=2 ML=64 LL=128 BS=8 ES=10 ROWS=240 HROWS=100 DDP_ROWS=120 STEP_S=${STEP_S:-600} BUDGET_S=${BUDGET_S:-3000}
  export PYTHONPATH=$PKG/src
else
  # 999 rows: 849 train (107 steps of 8), 150 validation, evaluated and checkpointed once, at the end (a DeBERTa-v3-base
  # checkpoint with its optimizer state is 2.2 GB: each one costs seconds; the dry run checkpoints mid-epoch too)
  ROUNDS=${ROUNDS:-3} ML=512 LL=1024 BS=8 ES=200 ROWS=${ROWS:-999} HROWS=${HROWS:-300} DDP_ROWS=${DDP_ROWS:-400} STEP_S=${STEP_S:-150}
  BUDGET_S=${BUDGET_S:-420}
  # Carried wheels of what the image lacks or has older (gpu_results.py wheels picks them), in a folder of their own.
  if [ -d "$G/whl" ] && [ ! -d /tmp/site ]; then
    mapfile -t PICK < <("$PY" "$BENCH/gpu_results.py" wheels "$G/whl")
    echo "=== wheels: installing ${#PICK[@]} of $(ls "$G"/whl/*.whl | wc -l): ${PICK[*]##*/}" >> "$LOG"
    if [ ${#PICK[@]} -gt 0 ]; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "${PICK[@]}" >> "$LOG" 2>&1 || echo "=== wheels: pip install failed" >> "$LOG"
    fi
  fi
  export PYTHONPATH=/tmp/site:$PKG/src
fi
AP="$PY -m arenapref"
echo "=== gpu_check: commit $COMMIT, SMALL=$SMALL, max length $ML (joint $LL), $ROWS rows, $(date -u +%FT%TZ)" >> "$LOG"

# step NAME "PATHS" COMMAND...: runs COMMAND with a time limit, then reads the losses in PATHS (model directories,
# prediction CSVs) and in the step's own output; appends a row to results.tsv.
step() {
  local name=$1 paths=$2
  shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  local left=$(( BUDGET_S - ($(date +%s) - T0) ))
  if (( left < 15 )); then
    printf "%s\tskipped\t0\t-\t-\t-\t-\n" "$name" >> "$RES"
    echo "=== $name: skipped, BUDGET_S=$BUDGET_S s spent" >> "$LOG"
    return
  fi
  local out=$W/logs/$name.txt mem=$W/logs/$name.mem sampler="" rc t0 t1 limit=$(( left < STEP_S ? left : STEP_S ))
  echo "=== $name: $*" >> "$LOG"
  if [ "$SMALL" != 1 ] && command -v nvidia-smi > /dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$mem" 2>/dev/null &
    sampler=$!
  fi
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$out" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null && wait "$sampler" 2>/dev/null
  local peak
  peak=$(sort -n "$mem" 2>/dev/null | tail -1)
  sed 's/.*\r//' "$out" >> "$LOG"
  grep '^{"' "$out" | sed "s/^/$name\t/" >> "$JSONL"  # JSON lines, not the Trainer's dict reprs
  local losses
  # shellcheck disable=SC2086  # PATHS is a list of paths
  losses=$("$PY" "$BENCH/gpu_results.py" losses $paths "$out" 2>> "$LOG" || printf -- "-\t-\t-")
  printf "%s\t%s\t%s\t%s\t%s\n" "$name" "$rc" "$(awk "BEGIN {printf \"%.1f\", $t1 - $t0}")" "$losses" \
    "${peak:--}" >> "$RES"
  echo "--- $name rc=$rc $(tail -1 "$RES" | cut -f3)s" >> "$LOG"
}

subset() {  # subset SOURCE ROWS TARGET: the first ROWS rows of a CSV (fields hold newlines: read it as CSV)
  "$PY" -c "import csv, sys; csv.field_size_limit(1 << 30); r = list(csv.reader(open(sys.argv[1], newline='', \
encoding='utf-8'))); csv.writer(open(sys.argv[3], 'w', newline='', encoding='utf-8')).writerows(r[:int(sys.argv[2]) + 1])" \
    "$1" "$2" "$3"
}

if [ ! -f "$W/train.csv" ]; then
  { subset "$D" "$ROWS" "$W/train.csv" && subset "$D" "$DDP_ROWS" "$W/ddp.csv" \
    && subset "$H" "$HROWS" "$W/holdout.csv"; } || echo "=== data missing: $D $H" >> "$LOG"
fi
D=$W/train.csv H=$W/holdout.csv
DEB=$W/bb/deberta LLA=$W/bb/llama

step env "" "$PY" "$BENCH/gpu_results.py" env "$PKG/pyproject.toml"
grep '^{' "$W/logs/env.txt" 2>/dev/null | tail -1 > "$OUT/env.json"
{ nvidia-smi 2>&1 || echo "no nvidia-smi"; } > "$OUT/nvidia-smi.txt"
[ -d "$DEB" ] || step backbones "" env SMALL="$SMALL" "$PY" "$BENCH/gpu_backbones.py" "$TOK" "$W/bb"

# The plain head (configs/dual_tower.yaml: N(0, 0.02) head over the pooled vectors, no side features, no probe, lr
# 5e-5, head lr 1e-3) on the DeBERTa-v3-base shape, in fp16 (the design's recipe; DeBERTa-v3 is known for fp16
# overflow) and in bf16
PLAIN="train --config $CONF/dual_tower.yaml --backbone $DEB --max-length $ML --eval-steps $ES"
step ref_fp16 "$W/ref16" $AP $PLAIN --data "$D" --output "$W/ref16" --fp16
REF=$W/ref16
if [ ! -f "$REF/arenapref.json" ]; then  # a CPU dry run (no fp16 there), or fp16 broken on the card: bf16 now
  step ref_bf16 "$W/refbf" $AP $PLAIN --data "$D" --output "$W/refbf" --bf16
  REF=$W/refbf
fi
step eval_ref_fp32 "" $AP evaluate --model "$REF" --data "$H" --json
step eval_ref_fp16 "" $AP evaluate --model "$REF" --data "$H" --json --dtype fp16
# The speed table: fixed padding to 512 vs ours in fp32 and in bf16 / fp16, training steps, real-token share, memory
step speed_bf16 "" "$PY" "$BENCH/speed.py" --device cuda --model "$REF" --data "$D" --rows "$ROWS" \
  --max-length "$ML" --rounds "$ROUNDS" --low-precision bf16
step speed_fp16 "" "$PY" "$BENCH/speed.py" --device cuda --model "$REF" --data "$D" --rows "$ROWS" \
  --max-length "$ML" --rounds "$ROUNDS" --low-precision fp16
# Today's default dual tower: side features in the head (their device and dtype) and the probe's encoding pass on
# the GPU (--probe-c skips the probe's grid search of C, CPU work that is not what this checks)
step dt_bf16 "$W/dt" $AP train --data "$D" --output "$W/dt" --model dual-tower --backbone "$DEB" --max-length "$ML" \
  --eval-steps "$ES" --probe-c 0.03 --bf16
step eval_dt_fp16 "" $AP evaluate --model "$W/dt" --data "$H" --json --dtype fp16
step cross_bf16 "$W/ce" $AP train --data "$D" --output "$W/ce" --model cross-encoder --backbone "$DEB" \
  --max-length "$LL" --eval-steps "$ES" --batch-size "$BS" --probe-c 0.03 --bf16
step eval_ce_bf16 "" $AP evaluate --model "$W/ce" --data "$H" --json --dtype bf16
# the default model: a probe-headed dual tower + the gbdt
step hybrid_bf16 "$W/hy" $AP train --data "$D" --output "$W/hy" --backbone "$DEB" --max-length "$ML" \
  --eval-steps "$ES" --probe-c 0.03 --bf16
step eval_hy_bf16 "" $AP evaluate --model "$W/hy" --data "$H" --json --dtype bf16
step llm_bf16 "$W/llm" $AP train --data "$D" --output "$W/llm" --model llm --backbone "$LLA" --max-length "$LL" \
  --eval-steps "$ES" --batch-size "$BS" --bf16
step eval_llm_bf16 "" $AP evaluate --model "$W/llm" --data "$H" --json --dtype bf16
step llm_rank_bf16 "$W/llmrank" $AP train --data "$D" --output "$W/llmrank" --model llm --objective rank \
  --backbone "$LLA" --max-length "$ML" --eval-steps "$ES" --batch-size "$BS" --bf16
step predict_llmrank_bf16 "$W/llmrank.csv" $AP predict --model "$W/llmrank" --data "$H" --output "$W/llmrank.csv" \
  --scores --dtype bf16
step llm_export "" $AP export --model "$W/llmrank" --output "$W/llmrank-export"
step rank_bf16 "$W/rank" $AP train --data "$D" --output "$W/rank" --model dual-tower --objective rank \
  --no-head-features --backbone "$DEB" --max-length "$ML" --eval-steps "$ES" --probe-c 0.03 --bf16
step eval_rank_bf16 "" $AP evaluate --model "$W/rank" --data "$H" --json --dtype bf16
# One process under torchrun: the nccl process group and the Trainer's distributed set-up (gloo on a CPU). One
# process is not wrapped in DistributedDataParallel (accelerate does that from 2 processes: a machine of 2+ GPUs).
step ddp_1proc "$W/ddp" "$PY" -m torch.distributed.run --nproc_per_node 1 --master_port 29561 -m arenapref \
  $PLAIN --data "$W/ddp.csv" --output "$W/ddp" --bf16
# the reference recipe again, in bf16 (last: fp16 above is the design's, and the steps between train in bf16)
[ -d "$W/refbf" ] || step ref_bf16 "$W/refbf" $AP $PLAIN --data "$D" --output "$W/refbf" --bf16
# 999 rows in fp16 through predict's token-budget batches (65,536 tokens in flight on a GPU)
step predict_ref_fp16 "$W/ref16.csv" $AP predict --model "$REF" --data "$D" --output "$W/ref16.csv" --dtype fp16

echo "=== gpu_check: done in $(( $(date +%s) - T0 )) s" >> "$LOG"
column -t -s $'\t' "$RES" 2>/dev/null || cat "$RES"
echo "elapsed $(( $(date +%s) - T0 )) s; commit $COMMIT; files in $OUT"
