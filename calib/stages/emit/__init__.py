"""Emitters: stages that rewrite each detection's ``points`` as DCASE points.

Each emitter is a batch function over many detections at once (a
:class:`~calib.canvas.points.FlatPoints` in, their new polygons out; :mod:`.common` runs it over a
table chunk by chunk) plus a stage that applies it. They share :mod:`calib.canvas` for the
detections' energy maps (:mod:`calib.canvas.raster`), hulls and the seam
(:mod:`calib.canvas.sphere`). ``grid`` reads its n x n samples where they fall
(:mod:`calib.canvas.lookup`) instead of drawing whole maps. Every emitter stage goes through the
emitted-detections cache (:mod:`.cache`): a detection already emitted (same points, same emitter)
is not emitted again. The size guard (:mod:`calib.stages.emit.guard`) chains them to keep files small.
"""
