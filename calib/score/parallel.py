"""Independent jobs run in order: in this process, over joblib workers, or on a Dask cluster.

Every heavy step of calib (scoring clips, portfolio estimates, emitter ablations, the rerank
stage's labels) hands its jobs to :func:`parallel_map`, which returns their results in the order
of the jobs whatever ran them, so outputs are byte-identical with ``jobs=1``, ``jobs=N`` or a Dask
cluster. Nothing here knows about scoring: any module may use it (it imports nothing of calib).

- ``jobs``: joblib workers (1: this process; -1: one per core). ``backend``: "loky" (processes),
  "threading" or "dask" (joblib's Dask backend on a ``distributed.Client``: the scheduler at
  ``scheduler``, e.g. ``tcp://10.0.0.5:8786``, or a local in-process cluster when None). The
  cluster's workers need calib installed and the same paths as this process (the stage cache and
  the data on a shared file system).
- No pool is started when the work is too small to gain from it: the caller passes its estimate
  and :func:`use_pool` compares it with :data:`POOL_MIN_SECONDS`.
- :func:`scale_out` sets these for a whole command (``calib run --jobs 2``): the code under it
  reads them with :func:`settings` and one Dask client serves every map of the command.
- Progress: :func:`progress` gives a tqdm bar on stderr, shown when stderr is a terminal
  (``disable=None``) unless the command asked for quiet (:func:`scale_out` ``quiet=True``).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

BACKENDS = ("loky", "threading", "dask")

#: Estimated in-process seconds of a batch of jobs below which no pool is started (``jobs`` > 1 is
#: then ignored). Measured on 2 cores (tests/benchmarks/bench_score.py pool, 4 lowthr clips x 300
#: frames): starting a loky pool and importing calib in its workers costs about 1.2 s (a reused pool
#: 0.15 s); warm, the job takes 0.13 s in this process and 1.34 s with a new pool; cold (7.5 s in
#: this process) a pool of 2 takes 4.7 s. Two workers save at most half, so a new pool pays from
#: about 2 x 1.2 s of work.
POOL_MIN_SECONDS = 2.5

#: The same threshold for a batch of light-to-start jobs (GT maps, labels, scoring, ingest:
#: ``use_pool(reuses_pool=True)``) when this process has a loky pool of that size running already
#: (:func:`prestart`, or an earlier batch): its workers are up with the jobs' modules imported, and
#: a batch costs a dispatch (about 0.15 s) and the transfers.
POOL_MIN_SECONDS_WARM = 0.5

#: joblib stops a loky worker idle for 300 s: a pool unused for longer is taken as gone
_WARM_FOR_S = 240.0
_LOKY_USED: dict[int, float] = {}  # loky pool size (jobs) -> time.monotonic() of its last use here
_STARTING: dict[int, threading.Thread] = {}  # pools being started by :func:`prestart`


@dataclass(frozen=True)
class Settings:
    """How a command runs its heavy work: ``jobs``, ``backend``, ``scheduler`` as
    :func:`parallel_map`; ``quiet``: no progress bars."""

    jobs: int = 1
    backend: str = "loky"
    scheduler: str | None = None
    quiet: bool = False

    @property
    def parallel(self) -> bool:
        """Whether jobs may leave this process (more than one worker, or a Dask cluster)."""
        return self.jobs != 1 or self.backend == "dask"

    def par(self) -> dict[str, Any]:
        """The keyword arguments of :func:`parallel_map`."""
        return {"jobs": self.jobs, "backend": self.backend, "scheduler": self.scheduler}


_SETTINGS: contextvars.ContextVar[Settings] = contextvars.ContextVar("calib_parallel", default=Settings())
_CLIENT: contextvars.ContextVar[Any] = contextvars.ContextVar("calib_dask_client", default=None)


def settings() -> Settings:
    """The settings of the enclosing :func:`scale_out` block (one local job, bars shown, outside)."""
    return _SETTINGS.get()


def resolve(jobs: int | None, backend: str | None, scheduler: str | None) -> tuple[int, str, str | None]:
    """(jobs, backend, scheduler) with each None taken from :func:`settings` (the scheduler only
    when the backend is the block's too)."""
    s = _SETTINGS.get()
    backend_ = s.backend if backend is None else backend
    if scheduler is None and backend_ == s.backend:
        scheduler = s.scheduler
    return (s.jobs if jobs is None else jobs), backend_, scheduler


def check_backend(backend: str) -> None:
    """Refuse an unknown backend, and a Dask one without Dask installed (an ImportError the CLI turns
    into "install calib[dask]"), before any work: small jobs run in-process and would otherwise
    never say that the cluster the user asked for cannot be reached."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}, got {backend!r}")
    if backend == "dask":
        import dask  # noqa: F401
        import distributed  # noqa: F401


def check_jobs(jobs: int) -> int:
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs == 0 or jobs < -1:
        raise ValueError(f"jobs must be a positive whole number or -1 (one per core), got {jobs!r}")
    return jobs


@contextlib.contextmanager
def scale_out(jobs: int = 1, backend: str = "loky", scheduler: str | None = None, quiet: bool = False):
    """A block whose heavy work runs with these settings (:func:`settings`). With the Dask backend,
    one client (connected to ``scheduler``, or a local in-process cluster) serves the whole block;
    it is opened at the first map that needs it and closed at the end of the block."""
    check_jobs(jobs)
    check_backend(backend)
    if scheduler is not None and backend != "dask":
        raise ValueError("a scheduler address needs --backend dask")
    token = _SETTINGS.set(Settings(jobs, backend, scheduler, quiet))
    client_token = _CLIENT.set(None)
    try:
        yield settings()
    finally:
        client = _CLIENT.get()
        _CLIENT.reset(client_token)
        _SETTINGS.reset(token)
        if client is not None:
            client.close()


def local_client(jobs: int = 1):
    """A Dask client of a local cluster on this machine: ``jobs`` worker processes (1 or -1: one
    per core) of one thread each (calib's caches are per process, not shared between threads)."""
    import os

    from distributed import Client

    n = jobs if jobs > 1 else (os.cpu_count() or 1)
    return Client(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)


def _client(scheduler: str | None, jobs: int):
    """(client, whether the caller closes it): the block's client when :func:`scale_out` opened one
    (or will: it is opened here and kept for the block), else a client for this call."""
    from distributed import Client

    inside = _SETTINGS.get().backend == "dask"
    client = _CLIENT.get() if inside else None
    if client is None:
        client = Client(scheduler) if scheduler else local_client(jobs)
        if inside:
            _CLIENT.set(client)
    return client, not inside


_BLAS = None  # this process's threadpoolctl controller: finding the libraries takes milliseconds


def _blas_controller():
    global _BLAS
    if _BLAS is None:
        import scipy.interpolate  # noqa: F401  (load scipy's BLAS before the controller lists them)
        from threadpoolctl import ThreadpoolController

        _BLAS = ThreadpoolController()
    return _BLAS


def one_blas_thread(fn, *args):
    """Run fn with one BLAS thread (see calib/__init__.py: scipy's tiny LAPACK calls)."""
    settle_worker()
    with _blas_controller().limit(limits=1, user_api="blas"):
        return fn(*args)


#: loky's guard against leaking jobs: it stops a worker whose memory grew this much over what it
#: held after its first job (and starts another, warning "A worker stopped while some jobs were
#: given to the executor ... memory leak")
_LOKY_GUARD = "_MAX_MEMORY_LEAK_SIZE"
_SETTLED = False  # this process went through settle_worker


def settle_worker() -> None:
    """Once per worker process (one with a parent: a loky or Dask worker; nothing elsewhere):

    - keep it for the whole command, whatever it holds. calib's workers keep what they load on
      purpose -- a portfolio chain worker its inputs and a chain's working tables (GiBs at dev size;
      :func:`calib.portfolio.run.worker_memory` sizes the pool for them), a scoring worker the GT
      maps of its clips -- so loky's leak guard (300 MB over what the worker held after its first
      job) would stop a chain worker after its first chain and again after any chain that leaves
      it 300 MB larger, and its successor load the modules and the inputs again. The pool ends
      with the command, which bounds what a worker holds.
    - give tqdm a thread lock: its default one holds a multiprocessing semaphore, made with the
      worker's first (hidden) bar and left behind when the pool stops the worker
      ("resource_tracker: There appear to be N leaked semaphore objects"). A worker shows no bar:
      its own threads are all the lock has to order."""
    global _SETTLED
    if _SETTLED:
        return
    import multiprocessing
    import sys

    if multiprocessing.parent_process() is not None:  # (threads of a Dask worker may do it twice: no harm)
        loky = sys.modules.get("joblib.externals.loky.process_executor")
        if loky is not None and isinstance(getattr(loky, _LOKY_GUARD, None), int):
            setattr(loky, _LOKY_GUARD, 1 << 62)
        from tqdm.std import tqdm

        tqdm.set_lock(threading.RLock())
    _SETTLED = True


def use_pool(n_items: int, estimated_seconds: float | None, *, jobs: int = 1, backend: str = "loky",
             reuses_pool: bool = False) -> bool:
    """Whether a batch of ``n_items`` jobs should leave this process: more than one job, more than
    one worker (or a Dask cluster), and an estimate (None: unknown, taken as big enough) of at
    least :data:`POOL_MIN_SECONDS`, or :data:`POOL_MIN_SECONDS_WARM` for jobs that need nothing a
    running worker lacks (``reuses_pool``) when a pool of that size is already running."""
    if n_items < 2 or (jobs == 1 and backend != "dask"):
        return False
    least = POOL_MIN_SECONDS_WARM if reuses_pool and pool_running(jobs, backend) else POOL_MIN_SECONDS
    return estimated_seconds is None or estimated_seconds >= least


def pool_running(jobs: int, backend: str = "loky") -> bool:
    """Whether this process has started a loky pool of ``jobs`` workers (:func:`prestart` or an
    earlier :func:`parallel_map`) recently enough that its workers are still up."""
    used = _LOKY_USED.get(jobs) if backend == "loky" and jobs != 1 else None
    return used is not None and time.monotonic() - used < _WARM_FOR_S


def import_modules(modules: Sequence[str], *, ignore_errors: bool = False) -> None:
    """Import ``modules`` (names fixed in calib's code, never read from data): ahead of the work that
    needs them, in a worker (:func:`prestart`) or a thread; ``ignore_errors`` leaves a failure to
    the import that needs the module (a missing extra then says so where it is needed)."""
    import importlib

    for m in modules:
        try:
            importlib.import_module(m)
        except Exception:
            if not ignore_errors:
                raise


def prestart(estimated_seconds: float, modules: Sequence[str]) -> bool:
    """Start the loky workers of the enclosing :func:`scale_out` block now, in the background, and
    import ``modules`` in each, when the command's pooled work is estimated at
    :data:`POOL_MIN_SECONDS` or more: their start and imports (about 1.2 s for calib's scorer) then
    overlap what this process does first (importing, reading its inputs) instead of delaying its
    first batch. Returns whether it did."""
    s = settings()
    if s.backend != "loky" or s.jobs == 1 or estimated_seconds < POOL_MIN_SECONDS or pool_running(s.jobs):
        return False
    import os

    n = s.jobs if s.jobs > 0 else (os.cpu_count() or 1)

    def start() -> None:
        from joblib import Parallel, delayed, parallel_config

        with parallel_config(backend="loky", n_jobs=s.jobs):
            Parallel()(delayed(import_modules)(tuple(modules)) for _ in range(n))

    t = threading.Thread(target=start, name="calib-pool-start", daemon=True)
    _STARTING[s.jobs] = t
    _LOKY_USED[s.jobs] = time.monotonic()
    t.start()
    return True


def _started(jobs: int) -> None:
    """Wait for a :func:`prestart` of this pool size (one loky executor serves one batch at a time)."""
    t = _STARTING.pop(jobs, None)
    if t is not None:
        t.join()


def release_workers() -> None:
    """Stop this process's loky workers now (the end of a command): the interpreter's exit would
    otherwise wait for each of them to wind down."""
    if not _LOKY_USED:
        return
    for jobs in list(_STARTING):
        _started(jobs)
    from joblib.externals.loky import reusable_executor

    ex = reusable_executor._executor  # joblib's loky pool of this process, if one was started
    if ex is not None:
        ex.shutdown(wait=True, kill_workers=True)
    _LOKY_USED.clear()


def largest_first(costs: Sequence[float]) -> list[int]:
    """Job order for a pool: biggest first (stable), so a big job does not start last and keep
    one worker busy while the others idle."""
    return sorted(range(len(costs)), key=lambda i: -costs[i])


_BARS = 0  # bars open in this process: a phase inside another's draws none


def progress(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm bar on stderr for one long phase: shown when stderr is a terminal (``disable=None``:
    CI logs and captured output stay clean), never in a quiet :func:`scale_out` block, nor inside
    another phase's bar (nested phases, such as the scorings of a portfolio, stay silent). Close
    it (or use it in a ``with`` block, or iterate it to the end)."""
    from tqdm.auto import tqdm

    global _BARS
    if _SETTINGS.get().quiet:  # no count kept: the jobs of :func:`thread_map` are quiet, and share _BARS
        return tqdm(iterable, desc=desc, total=total, unit=unit, disable=True)
    hidden = _BARS > 0  # one bar at a time: the outer phase's
    bar = tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True,
               disable=True if hidden else None)
    _BARS += 1
    close = bar.close

    def closed():
        global _BARS
        if not getattr(bar, "_calib_closed", False):
            bar._calib_closed = True
            _BARS -= 1
        close()

    bar.close = closed
    return bar


def parallel_map(fn: Callable, items: Iterable[tuple], *, jobs: int = 1, backend: str = "loky",
                 scheduler: str | None = None, desc: str | None = None, unit: str = "job") -> list:
    """[fn(*item) for item in items], in order, over joblib workers when ``jobs`` != 1 (loky
    processes, threads) or on a Dask cluster (backend "dask": the scheduler at ``scheduler``, or a
    local in-process cluster when None; inside a :func:`scale_out` block, the block's client).
    ``desc``: a progress bar over the jobs (:func:`progress`). Each job runs with one BLAS thread."""
    items = list(items)
    check_backend(backend)
    bar = progress(total=len(items), desc=desc, unit=unit) if desc and items else None
    try:
        if (jobs == 1 and backend != "dask") or not items:
            out = []
            for it in items:
                out.append(one_blas_thread(fn, *it))
                if bar is not None:
                    bar.update()
            return out
        from joblib import Parallel, delayed, parallel_config

        calls = (delayed(one_blas_thread)(fn, *it) for it in items)

        def collect(par) -> list:
            out = []
            for res in par(calls):  # in the order of the jobs, whichever finished first
                out.append(res)
                if bar is not None:
                    bar.update()
            return out

        if backend == "dask":
            client, close = _client(scheduler, jobs)
            try:
                with parallel_config(backend="dask"):
                    return collect(Parallel(return_as="generator"))
            finally:
                if close:
                    client.close()
        if backend == "loky":
            _started(jobs)
        try:
            with parallel_config(backend=backend, n_jobs=jobs):
                return collect(Parallel(return_as="generator"))
        finally:
            if backend == "loky":
                _LOKY_USED[jobs] = time.monotonic()
    finally:
        if bar is not None:
            bar.close()



#: what a job of :func:`thread_map` runs its own heavy work with: in its thread, without bars
_IN_THREAD = Settings(1, "loky", None, True)


def gil_free_map(fn: Callable, items: Sequence, *, jobs: int | None = None, backend: str | None = None,
                 min_per_thread: int = 4) -> list:
    """[fn(item) for item in items], in order, over threads of this process for work that leaves
    the GIL (hashlib hashing large buffers): as many as the local ``jobs`` (default: the enclosing
    :func:`scale_out` block's), with at least ``min_per_thread`` items each; one without jobs, or
    on a Dask cluster (its workers are not this machine's cores)."""
    jobs, backend, _ = resolve(jobs, backend, None)
    local = jobs if jobs > 0 else (os.cpu_count() or 1)
    threads = 1 if backend == "dask" else max(1, min(local, len(items) // max(min_per_thread, 1)))
    if threads == 1:
        return [fn(it) for it in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="calib-gil-free") as ex:
        return list(ex.map(fn, items))


def thread_map(fn: Callable, items: Iterable[tuple], *, threads: int, desc: str | None = None,
               unit: str = "job") -> list:
    """[fn(*item) for item in items], in order, over ``threads`` threads of this process: for jobs
    too small to pay for worker processes (their start, imports, and inputs sent over) whose work
    mostly releases the GIL (LightGBM, polars, Parquet, Qhull). Each job runs in a copy of the
    caller's context (its cache folders) where its own heavy work stays in its thread, without
    bars (one job, quiet): two threads never share a pool. The caches calib keeps in memory lock
    their state for this; BLAS keeps one thread throughout. The first error is raised once the
    running jobs have finished (the others are not started)."""
    from concurrent.futures import ThreadPoolExecutor, as_completed

    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return parallel_map(fn, items, jobs=1, desc=desc, unit=unit)

    def job(it):
        _SETTINGS.set(_IN_THREAD)
        _CLIENT.set(None)
        return fn(*it)

    contexts = [contextvars.copy_context() for _ in items]  # here: a new thread's own context is empty
    out: list = [None] * len(items)
    bar = progress(total=len(items), desc=desc, unit=unit) if desc else None
    try:
        with _blas_controller().limit(limits=1, user_api="blas"), \
                ThreadPoolExecutor(min(threads, len(items)), thread_name_prefix="calib-job") as ex:
            futures = {ex.submit(ctx.run, job, it): i for i, (ctx, it) in enumerate(zip(contexts, items))}
            try:
                for f in as_completed(futures):
                    out[futures[f]] = f.result()
                    if bar is not None:
                        bar.update()
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        if bar is not None:
            bar.close()
    return out
