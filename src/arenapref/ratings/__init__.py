"""Model ratings from votes: one Bradley-Terry solver, battle files, leaderboards with intervals, style control,
and best-of-n ranking of candidate responses."""
