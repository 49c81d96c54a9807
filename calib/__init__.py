"""calib: the post-hoc engine for DCASE 2026 Task 3 (STAIRS26) detections."""
import os as _os

# The scorer and several stages make thousands of tiny LAPACK calls (scipy's Delaunay / barycentric
# transforms). A multi-threaded BLAS spin-waits on each of them: on a loaded 2-core machine one
# griddata call went from 33 ms to 38 s. One BLAS thread per process; parallelism is over clips.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

# polars' allocator (jemalloc) keeps freed pages for 10 s by default: at dev scale the transient
# tables of one step (gigabytes of points) stayed resident while the next step allocated its own,
# and a process held 0.5 GiB per 0.3 GiB of freed tables (reading an 8-clip truth table three
# times: 759 MiB peak, 590 MiB returning pages at once; no measurable change in speed). Read by
# jemalloc when polars loads, so only where calib is imported first (the CLI, its pool workers).
_os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

__version__ = "0.1.0"
