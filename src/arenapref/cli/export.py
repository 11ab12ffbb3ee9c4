"""export: a rank model as a scalar reward model that transformers loads without arenapref."""

from __future__ import annotations

from pathlib import Path

import typer

from arenapref.cli.common import console, quiet_libraries
from arenapref.export.reward_model import export_reward_model, exportable_meta


def export(
    model: Path = typer.Option(..., help="Rank-objective model directory (llm, or dual-tower with "
                                         "--no-head-features)."),
    output: Path = typer.Option(..., help="New directory for the reward model."),
):
    """Write a rank model as a scalar reward model: a Hugging Face *ForSequenceClassification directory with one
    output that transformers loads without arenapref (TRL, OpenRLHF, vLLM conventions)."""
    exportable_meta(model)  # a model without per-response scores fails here, before torch loads
    quiet_libraries()
    summary = export_reward_model(model, output)
    remote = ", trust_remote_code=True" if summary["trust_remote_code"] else ""
    console.print(f"wrote {output}: {summary['architecture']} with num_labels=1 (Davidson log nu "
                  f"{summary['davidson_log_nu']:.4f}); load it with "
                  f"AutoModelForSequenceClassification.from_pretrained(\"{output}\"{remote})")
