"""Writing a rank model as a scalar reward model that transformers loads without arenapref."""
