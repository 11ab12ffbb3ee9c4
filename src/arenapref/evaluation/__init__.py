"""Judging the judge: metrics, temperature calibration, ensembles, and the HTML report with its figures."""
