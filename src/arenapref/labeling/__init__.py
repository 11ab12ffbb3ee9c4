"""Choosing which battles humans should label next (acquisition strategies) and simulated labelling campaigns."""
