"""Prediction: the calibrated Predictor every model directory loads into, the neural backend (token-budget batching,
CPU workers, int8), and the hybrid's blend."""
