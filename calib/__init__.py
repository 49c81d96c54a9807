"""calib: the post-hoc engine for DCASE 2026 Task 3 (STAIRS26) detections."""
import os as _os

# The scorer and several stages make thousands of tiny LAPACK calls (scipy's Delaunay / barycentric
# transforms). A multi-threaded BLAS spin-waits on each of them: on a loaded 2-core machine one
# griddata call went from 33 ms to 38 s. One BLAS thread per process; parallelism is over clips.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
