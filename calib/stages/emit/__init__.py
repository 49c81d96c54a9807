"""Emitters: stages that rewrite each detection's ``points`` as DCASE points.

Each emitter is a pure per-detection function (polygons in, polygons out) plus a stage that applies
it to every row of a detections table. They share :mod:`calib.render` for the detection's energy
map and for the seam. The size guard (:mod:`calib.emit_guard`) chains them to keep files small.
"""
