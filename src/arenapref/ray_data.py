"""Batch inference with Ray Data: `RayScorer`, a callable class for `ray.data.Dataset.map_batches`, and
`predict_with_ray`, what `arenapref predict --engine ray` runs.

    import ray
    from arenapref.ray_data import RayScorer

    ds = ray.data.read_parquet("/shared/pairs/")  # Kaggle columns: id, prompt, response_a, response_b
    scored = ds.map_batches(RayScorer, fn_constructor_kwargs={"model": "/shared/model"}, batch_format="pandas",
                            batch_size=1024, concurrency=4, num_cpus=1)  # num_gpus=1: one GPU per scorer
    scored.write_parquet("/shared/scores/")

Each scorer loads the model once (Ray keeps the actor) and turns a batch of rows into id + the three probabilities,
the numbers `Judge.predict_proba` gives for the same rows. Ray is not a dependency of arenapref: `pip install
"ray[data]"` where it runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from arenapref.api import Judge
from arenapref.config import InferenceOptions
from arenapref.data.tables import LABELS, TEXT_COLUMNS, atomic_path, check_input_file, check_output_path
from arenapref.errors import DataError
from arenapref.models.directory import check_model_dir, resolve_model


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise DataError("--engine ray needs Ray Data: pip install \"ray[data]\"") from None
    return ray


class RayScorer:
    """A batch of rows (a pandas DataFrame, or Ray's dict of columns) -> a DataFrame of `id` and the probabilities
    (winner_model_a, winner_model_b, winner_tie), for `Dataset.map_batches(RayScorer, fn_constructor_kwargs={...})`.

    `model`: a model directory (on a path every worker sees) or a shipped judge's name; `tta`: "none" or "swap";
    `inference`: config.InferenceOptions fields (dtype, quantize, batch_tokens, workers, neural_fraction,
    tta_fraction, cascade_by). The text columns may hold lists of turns or Kaggle's JSON-encoded cells."""

    def __init__(self, model, tta: str = "none", **inference):
        options = InferenceOptions(**inference).validate()
        options.check_applies(check_model_dir(model)["model_type"], model)
        options.check_tta(tta)
        self.judge = Judge.from_pretrained(model, tta=tta, **options.load_kwargs())

    def __call__(self, batch) -> pd.DataFrame:
        frame = batch if isinstance(batch, pd.DataFrame) else pd.DataFrame(dict(batch))
        frame = frame.copy()
        for col in TEXT_COLUMNS:  # Arrow list columns arrive as numpy arrays of turns
            if col in frame.columns:
                frame[col] = [list(c) if isinstance(c, np.ndarray) else c for c in frame[col]]
        probs = self.judge.predict_proba(frame)
        out = pd.DataFrame({"id": frame["id"].astype(str).to_numpy()})
        for j, name in enumerate(LABELS):
            out[name] = probs[:, j]
        return out


# A scorer actor holds its CPU share for the whole run; read tasks reserve only a sliver, or scorers filling every
# CPU would leave none for the reads they wait on (a deadlock seen on a 2-CPU local instance).
READ_CPUS = 0.1


def read_dataset(ray, path: Path):
    """The input file (CSV with quoted multi-line cells, JSON lines or Parquet) as a Ray Dataset, text as strings."""
    suffix = check_input_file(path)
    remote = {"ray_remote_args": {"num_cpus": READ_CPUS}}
    if suffix == ".parquet":
        return ray.data.read_parquet(str(path), **remote)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return ray.data.read_json(str(path), lines=True, **remote)
    if suffix != ".csv":
        raise DataError(f"{path}: --engine ray reads .csv, .jsonl or .parquet files")
    import pyarrow.csv as pacsv

    names = pacsv.read_csv(str(path), read_options=pacsv.ReadOptions(block_size=1 << 20),
                           parse_options=pacsv.ParseOptions(newlines_in_values=True)).column_names
    return ray.data.read_csv(str(path), parse_options=pacsv.ParseOptions(newlines_in_values=True),
                             convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, "string")),
                             **remote)


def predict_with_ray(model, data: Path, output: Path, address: str | None, tta: str, inference: dict,
                     concurrency: int | None = None, batch_size: int = 256) -> int:
    """Score DATA on the Ray cluster at `address` ("auto": the running one; None: start one here) with
    `concurrency` scorers (default: one per CPU of the cluster, each reserving 0.9 of one) and stream the results,
    in input order, into the Parquet file OUTPUT (a temporary file beside it, renamed into place at the end).
    Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ray = import_ray()
    model = resolve_model(model)
    options = InferenceOptions(**inference).validate()
    options.check_applies(check_model_dir(model)["model_type"], model)
    options.check_tta(tta)
    check_output_path(output)
    if output.suffix.lower() != ".parquet":
        raise DataError(f"{output}: --engine ray writes Parquet; name the output .parquet")
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    rows = 0
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # the output in input order, like `predict`
        ds = read_dataset(ray, Path(data))
        workers = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        scored = ds.map_batches(RayScorer, fn_constructor_kwargs={"model": str(model), "tta": tta, **inference},
                                batch_format="pandas", batch_size=batch_size, concurrency=workers,
                                num_cpus=1 - READ_CPUS)
        schema = pa.schema([("id", pa.string())] + [(name, pa.float64()) for name in LABELS])
        with atomic_path(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for batch in scored.iter_batches(batch_format="pandas", batch_size=None):
                writer.write_table(pa.Table.from_pandas(batch, schema=schema, preserve_index=False))
                rows += len(batch)
    finally:
        ray.shutdown()
    return rows
