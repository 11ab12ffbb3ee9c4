"""Style features of a battle's two responses, for style-controlled leaderboards: they live in data/style.py, where
the judges' style term (models/gbdt.py) reads them too; this module keeps the old import path working."""

from arenapref.data.style import (  # noqa: F401
    STYLE_FEATURES,
    TOKENIZER,
    count_tokens,
    parse_turn_lists,
    style_counts,
    style_covariates,
)
