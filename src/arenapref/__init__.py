"""arenapref: predict which of two chatbot responses a human prefers (A wins / B wins / tie)."""

__version__ = "0.1.0"
__all__ = ["LABELS", "Judge", "__version__"]


def __getattr__(name: str):
    # `import arenapref` stays light (no torch, no pandas): the names load on first use.
    if name == "Judge":
        from arenapref.api import Judge

        return Judge
    if name == "LABELS":
        from arenapref.data.tables import LABELS

        return LABELS
    raise AttributeError(f"module 'arenapref' has no attribute {name!r}")
