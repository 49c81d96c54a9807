"""The canvas kit: the detections' points as flat arrays and everything computed from them, for
a whole table at once.

- :mod:`calib.canvas.points`: :class:`~calib.canvas.points.FlatPoints` (flat x, y, e with per-detection
  and per-polygon offsets), built from and back into a ``points`` column without a Python loop per
  row; segment reductions; peaks; emitted-number rounding.
- :mod:`calib.canvas.sphere`: directions and ACS transforms, the one seam rule, seam-aware boxes
  and their IoU, wrapping emitted sets back onto the canvas (seam split with support points).
- :mod:`calib.canvas.raster`: 1 px/degree energy maps of many detections in one buffer (lattices
  triangulated cell by cell, Qhull only for scattered polygons), with peaks, pixels, bilinear
  samples, nearest fill and peak-normalised mask IoU.
- :mod:`calib.canvas.lookup`: the same maps read at chosen pixels only (stamps, lattice cells,
  Delaunay point location), for emitters that sample a map instead of drawing it.
- :mod:`calib.canvas.triangulate`: Delaunay triangulations of many small sets, and point location
  in them without triangulating (:class:`~calib.canvas.triangulate.Locator`).
"""
