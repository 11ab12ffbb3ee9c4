"""Reading, validating, splitting and writing pair files (Kaggle LMSYS, TRL, hh-rlhf); conversation rendering and
token budgets; hand-made features; the token cache; swapping sides."""
