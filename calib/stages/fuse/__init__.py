"""Fusion stages: priors and teacher outputs applied to detections, and ensembles of systems,
ACS views and checkpoints (one module per stage)."""
