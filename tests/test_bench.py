"""The benchmarks the README quotes still run: bench/speed.py and bench/load.py end to end on the tiny model.

Speeds are not asserted (the figures come from the real runs in the README); what is checked is that every
pipeline runs, the fp32 pipelines agree and the result line has its fields. `--low-precision bf16` runs the branch
a GPU takes (a bf16 copy instead of int8) on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # every test runs a benchmark script end to end


def run_bench(script: str, *args, check: bool = True):
    """Run a benchmark script on this checkout's code; with `check`, its last stdout line parsed as JSON."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *map(str, args)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    if not check:
        return None, proc
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc


@pytest.mark.parametrize("low_precision", ["auto", "bf16"])
def test_speed_benchmark_runs_every_pipeline(tiny_model, arena_csv, low_precision):
    result, proc = run_bench("speed.py", "--model", tiny_model, "--data", arena_csv, "--rows", 12, "--rounds", 2,
                             "--train-steps", 1, "--batch-size", 4, "--max-length", 512, "--device", "cpu",
                             "--low-precision", low_precision)
    low = "int8" if low_precision == "auto" else "bf16"
    assert "2 torch threads in 2 encoder workers" in result["device"]
    assert result["max_abs_prob_diff"] < 1e-4
    assert result["real_token_share"] > result["reference_real_token_share"] and result["padding_bound"] > 1
    assert result["inference_speedup"] > 0 and result[f"inference_speedup_{low}"] > 0
    assert result["training_speedup"] > 0 and result["training_real_token_share"] > 0
    assert abs(result[f"log_loss_change_{low}"]) < 0.1 and 0 < result[f"max_abs_prob_diff_{low}"] < 0.1
    if low == "bf16":
        assert result["inference_speedup_int8"] is None
    assert "benchmark's batch-by-batch run == predict_pairs" in proc.stdout


def test_speed_benchmark_refuses_fp16_on_a_cpu(tiny_model, arena_csv):
    _, proc = run_bench("speed.py", "--model", tiny_model, "--data", arena_csv, "--device", "cpu",
                        "--low-precision", "fp16", check=False)
    assert proc.returncode != 0 and "--low-precision fp16 runs on cuda only" in proc.stderr


def test_load_benchmark_passes_its_checks_on_the_tiny_model(tiny_model):
    result, _ = run_bench("load.py", "--model", tiny_model, "--clients", 4, "--requests", 48, "--warmup", 8)
    assert result["requests"] == 48 and result["status_5xx"] == 0
    for check in ("no_5xx", "malformed_all_4xx", "valid_all_200", "memory_flat", "server_alive"):
        assert result[check] is True, check
    assert result["malformed"] > 0 and result["valid"] > 0


def test_leaderboard_benchmark_runs_ours_the_reference_and_the_cli():
    """bench/leaderboard.py at a toy size: both fits agree, every CLI run (bootstrap, sandwich, style control)
    succeeds, and the style-controlled ranking is at least as close to the truth as the plain one."""
    result, proc = run_bench("leaderboard.py", "--sizes", 4000, "--models", 8, "--bootstrap", 30,
                             "--reference-rounds", 1, "--cli-rows", 3000, "--style-rounds", 2, "--length-effect", 0.8)
    size = result["sizes"]["4000"]
    assert size["max_abs_rating_diff"] < 0.5 and size["reference_design"] == "dense"
    assert size["ours_fit_s"] > 0 and size["reference_round_s"] > 0 and size["ours_peak_mib"] >= 0
    for run in ("cli_bootstrap", "cli_no_intervals", "cli_sandwich", "cli_style_sandwich", "cli_style_bootstrap"):
        assert result[run]["seconds"] > 0 and result[run]["peak_mib"] > 0, run
    style = result["cli_style_sandwich"]
    assert style["spearman_style_vs_truth"] >= style["spearman_plain_vs_truth"]
    assert style["length_coef"]["ci_low"] > 0
    assert "largest rating difference" in proc.stdout


def test_extra_direction_benchmark_runs(tmp_path, arena_csv, tiny_deberta):
    import pandas as pd

    raw = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    raw.head(100).to_csv(tmp_path / "data.csv", index=False)
    raw.iloc[100:250].to_csv(tmp_path / "extra.csv", index=False)
    result, _ = run_bench("extra_direction.py", "--data", tmp_path / "data.csv", "--extra", tmp_path / "extra.csv",
                          "--backbone", tiny_deberta, "--folds", 2)
    assert set(result) == {"features", "features+pooled"}
    assert all(0.5 < r["log_loss"] < 2.0 and r["shorter_won_log_loss"] > 0 for r in result.values())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_speed_benchmark_refuses_cuda_where_there_is_none():
    # bench/gpu_check.sh's dry run on a CPU: the CUDA steps must end in one line, not a traceback
    _, proc = run_bench("speed.py", "--device", "cuda", check=False)
    assert proc.returncode != 0 and "torch sees no CUDA device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_style_control_benchmark_runs(tmp_path, arena_csv):
    """bench/style_control.py on 300 arena rows and 120 rows of each out-of-domain file, 2 folds, no extra file, the
    gbdt only (the hybrid's rows take minutes per fold)."""
    import pandas as pd

    for name, rows in (("arena_sample", 300), ("hh_rlhf_harmless_test", 120), ("pandalm_human_test", 120)):
        source = arena_csv.parent / f"{name}.csv"
        pd.read_csv(source, dtype=str, keep_default_na=False).head(rows).to_csv(tmp_path / f"{name}.csv", index=False)
    result, proc = run_bench("style_control.py", "--data-dir", tmp_path, "--folds", 2, "--no-extra",
                             "--models", "gbdt")
    cv = result["cv"]
    assert {"prior", "style_alone", "longer_rule", "gbdt today as-voted", "gbdt style_term as-voted",
            "gbdt style_term controlled"} == set(cv)
    voted, controlled = cv["gbdt style_term as-voted"], cv["gbdt style_term controlled"]
    assert 0.8 < voted["log_loss"] < 1.3
    assert controlled["log_loss"] != voted["log_loss"]
    assert voted["log_loss_minus_today"] == round(voted["log_loss"] - cv["gbdt today as-voted"]["log_loss"], 4)
    assert controlled["shorter_won"]["rows"] + controlled["longer_won"]["rows"] <= controlled["decisive"]["rows"]
    for name in ("hh_rlhf_harmless", "pandalm_human"):
        assert set(result["out_of_domain_pairwise"][name]) == {"longer_rule", "gbdt today as-voted",
                                                                "gbdt style_term as-voted",
                                                                "gbdt style_term controlled"}
    assert "shorter won" in proc.stdout


def test_style_probe_benchmark_runs(tmp_path, arena_csv, monkeypatch):
    """bench/style_probe.py on 200 arena rows, 150 extra rows (the sample's last ones, another prompt set) and 60 rows
    of each out-of-domain file, 2 folds: the three probe heads, as voted and controlled, and the two diagnostic heads,
    in and out of domain; each log loss split into its tie and A-vs-B parts."""
    import pandas as pd

    monkeypatch.setenv("ARENAPREF_CACHE", str(tmp_path / "cache"))
    arena = pd.read_csv(arena_csv, dtype=str, keep_default_na=False)
    arena.head(200).to_csv(tmp_path / "arena_sample.csv", index=False)
    arena.tail(150).to_csv(tmp_path / "arena_extra.csv", index=False)
    for name in ("hh_rlhf_harmless_test", "pandalm_human_test"):
        source = arena_csv.parent / f"{name}.csv"
        pd.read_csv(source, dtype=str, keep_default_na=False).head(60).to_csv(tmp_path / f"{name}.csv", index=False)
    result, _ = run_bench("style_probe.py", "--data-dir", tmp_path, "--folds", 2)
    heads = {"today", "factored all features", "factored all features+style_term", "style_term as-voted",
             "style_term controlled", "style_term+extra as-voted", "style_term+extra controlled"}
    assert set(result["cv"]) == heads and 0 < result["extra_rows"] < 150
    for name in heads:
        row = result["cv"][name]
        assert 0.8 < row["log_loss"] < 1.4
        assert abs(row["tie_part"] + row["ab_part"] - row["log_loss"]) < 2e-4
    assert result["cv"]["style_term controlled"]["log_loss"] != result["cv"]["style_term as-voted"]["log_loss"]
    for name in ("hh_rlhf_harmless", "pandalm_human"):
        assert set(result["out_of_domain_pairwise"][name]) == heads | {"longer_rule"}
    assert len(list((tmp_path / "cache" / "pooled").glob("*.npz"))) == 1  # the extra rows' vectors, kept
