"""arenapref: predict which of two chatbot responses a human prefers (A wins / B wins / tie)."""

__version__ = "0.1.0"
LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
