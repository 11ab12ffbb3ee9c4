"""arenapref: predict which of two chatbot responses a human prefers (A wins / B wins / tie)."""

__version__ = "0.1.0"
LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
__all__ = ["Judge", "LABELS", "__version__"]


def __getattr__(name: str):
    # `import arenapref` stays light (no torch); `from arenapref import Judge` loads the model code on first use.
    if name == "Judge":
        from .api import Judge

        return Judge
    raise AttributeError(f"module 'arenapref' has no attribute {name!r}")
