"""The Ray Data adapter: RayScorer's probabilities are Judge.predict_proba's, in map_batches on a local Ray and behind
`arenapref predict --engine ray`. Skipped where Ray is not installed (it is not a dependency)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from arenapref.api import Judge
from arenapref.data.tables import LABELS, load_frame
from arenapref.errors import DataError
from arenapref.ray_data import RayScorer
from conftest import run_cli


def test_scorer_gives_the_judges_probabilities_without_ray(gbdt_model, small_csv):
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    out = RayScorer(str(gbdt_model))(raw.head(40))  # Kaggle cells, JSON-encoded
    expected = Judge.from_pretrained(gbdt_model).predict_proba(load_frame(small_csv).head(40))
    assert out["id"].tolist() == raw["id"].head(40).tolist()
    assert np.array_equal(out[list(LABELS)].to_numpy(), expected)
    with pytest.raises(DataError, match="--batch-tokens applies to neural models"):
        RayScorer(str(gbdt_model), batch_tokens=512)


@pytest.mark.slow
def test_map_batches_and_the_ray_engine(gbdt_model, small_csv, tmp_path):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    frame = load_frame(small_csv)
    expected = Judge.from_pretrained(gbdt_model).predict_proba(frame)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = pd.DataFrame({"id": frame["id"], "prompt": frame["prompt"], "response_a": frame["response_a"],
                             "response_b": frame["response_b"]})  # lists of turns: Arrow list columns
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        scored = ray.data.from_pandas(rows).map_batches(
            RayScorer, fn_constructor_kwargs={"model": str(gbdt_model)}, batch_format="pandas", batch_size=32,
            concurrency=2, num_cpus=1).to_pandas()
    finally:
        ray.shutdown()
    assert scored["id"].tolist() == frame["id"].tolist()
    assert np.array_equal(scored[list(LABELS)].to_numpy(), expected)
    # the command line: Ray Data reads the CSV (multi-line cells), a local cluster scores it, Parquet comes out
    out = tmp_path / "scores.parquet"
    proc = run_cli("predict", "--model", gbdt_model, "--data", small_csv, "--output", out, "--engine", "ray")
    assert "wrote 96 rows" in proc.stdout
    written = pd.read_parquet(out)
    assert written["id"].tolist() == frame["id"].tolist()
    assert np.array_equal(written[list(LABELS)].to_numpy(), expected)
