"""Checks for calib's developers (not used by calib itself): ``python -m calib.devtools.layers``."""
