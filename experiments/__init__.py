"""Experiments: the comparison runner (``python -m experiments.compare``), its tables, plots and configs."""
