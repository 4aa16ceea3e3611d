"""Evaluations: score registered models on a dataset, side by side, as tracked runs with stored results."""
