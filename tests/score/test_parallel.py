"""calib.score.parallel: order-stable maps, the pool decision, the command-wide settings, quiet bars."""
from __future__ import annotations

import sys

import pytest

from calib.score import parallel
from calib.score.parallel import (check_backend, largest_first, parallel_map, progress, resolve, scale_out,
                                  settings, thread_map, use_pool)


def square_minus(x, y):
    return x * x - y


def test_it_imports_nothing_of_the_scorer():
    """Usable by any heavy work: the module stands alone (no calib.score.api behind it)."""
    src = parallel.__file__
    text = open(src).read()
    assert "calib.score.api" not in text and "from calib" not in text and "import calib" not in text


@pytest.mark.parametrize("jobs,backend", [(1, "loky"), (2, "threading"), (2, "loky")])
def test_results_come_back_in_the_order_of_the_jobs(jobs, backend):
    items = [(x, 1) for x in range(7, -1, -1)]
    assert parallel_map(square_minus, items, jobs=jobs, backend=backend) == [48, 35, 24, 15, 8, 3, 0, -1]
    assert parallel_map(square_minus, [], jobs=jobs, backend=backend) == []


def hold_memory_and_tell_pid(mib: int, seconds: float) -> int:
    """A job that leaves ``mib`` MiB more held in its process (pages touched) and lasts ``seconds``."""
    import os
    import time

    import numpy as np

    sys.modules[__name__].__dict__.setdefault("_HELD", []).append(np.ones(mib << 17))  # float64: 8 bytes
    time.sleep(seconds)
    return os.getpid()


def test_a_worker_keeps_what_its_jobs_hold():
    """loky stops a worker whose memory grew by 300 MB over its first job's (its guard against
    leaks; checked after a job when a second has passed since the last check) and starts another.
    calib's workers hold their loads on purpose (a chain's inputs, GT maps): the same two workers
    run all 8 jobs, though each holds 200 MiB more after every job (a third would show as a new
    pid after a worker's third job)."""
    pids = parallel_map(hold_memory_and_tell_pid, [(200, 1.1)] * 8, jobs=2, backend="loky")
    assert len(pids) == 8 and len(set(pids)) <= 2


def lock_of_a_bar() -> str:
    """The kind of lock tqdm orders bars with, once a (hidden) bar was made in this process."""
    from tqdm.std import tqdm

    parallel.progress(total=1, desc="job").close()
    return type(tqdm.get_lock()).__name__


def test_a_worker_makes_no_multiprocessing_lock_for_its_bars():
    """tqdm's default lock holds a multiprocessing semaphore that a stopped worker leaves behind
    (the resource tracker then warns of leaked semaphores at exit): workers order bars with a
    thread lock."""
    assert set(parallel_map(lock_of_a_bar, [()] * 4, jobs=2, backend="loky")) == {"RLock"}


def test_pool_only_for_work_that_pays():
    assert not use_pool(5, 100.0, jobs=1)  # one worker
    assert not use_pool(1, 100.0, jobs=2)  # one job
    assert not use_pool(5, parallel.POOL_MIN_SECONDS - 0.01, jobs=2)
    assert use_pool(5, parallel.POOL_MIN_SECONDS, jobs=2)
    assert use_pool(2, None, jobs=2)  # unknown work: worth a pool
    assert use_pool(2, 0.1, jobs=1, backend="dask") is False  # below the threshold even on a cluster
    assert use_pool(2, 10.0, jobs=1, backend="dask")


def test_largest_first_is_stable():
    assert largest_first([1.0, 3.0, 2.0, 3.0]) == [1, 3, 2, 0]


def test_scale_out_sets_the_defaults_of_the_block_and_restores_them():
    assert settings() == parallel.Settings()
    with scale_out(jobs=3, backend="threading", quiet=True) as s:
        assert s.jobs == 3 and s.parallel and s.quiet
        assert resolve(None, None, None) == (3, "threading", None)
        assert resolve(1, None, None) == (1, "threading", None)  # explicit values win
    assert resolve(None, None, None) == (1, "loky", None)


def test_scale_out_refuses_bad_settings():
    with pytest.raises(ValueError, match="backend must be"):
        with scale_out(backend="spark"):
            pass
    with pytest.raises(ValueError, match="jobs must be"):
        with scale_out(jobs=0):
            pass
    with pytest.raises(ValueError, match="needs --backend dask"):
        with scale_out(jobs=2, scheduler="tcp://127.0.0.1:8786"):
            pass


def test_dask_without_dask_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError):
        check_backend("dask")


def test_bars_are_off_when_quiet_and_inside_another_bar():
    with scale_out(quiet=True):
        with progress(range(3), desc="quiet") as bar:
            assert bar.disable
    with progress(range(3), desc="outer") as outer:
        with progress(range(3), desc="inner") as inner:
            assert inner.disable  # one bar at a time: the outer phase's
        list(inner)
    assert parallel._BARS == 0


def test_bars_stay_off_the_captured_output(capsys):
    """disable=None: no terminal (pytest's capture, a CI log), no bar."""
    assert parallel_map(square_minus, [(2, 0), (3, 0)], desc="phase") == [4, 9]
    out, err = capsys.readouterr()
    assert out == "" and "phase" not in err


def test_a_running_pool_takes_lighter_batches_of_light_jobs(monkeypatch):
    monkeypatch.setattr(parallel, "_LOKY_USED", {})
    small = (parallel.POOL_MIN_SECONDS + parallel.POOL_MIN_SECONDS_WARM) / 2
    assert not use_pool(4, small, jobs=2, reuses_pool=True)  # no pool yet: a new one costs more
    parallel._LOKY_USED[2] = parallel.time.monotonic()
    assert use_pool(4, small, jobs=2, reuses_pool=True)
    assert not use_pool(4, small, jobs=2)  # jobs that need more than the workers hold
    assert not use_pool(4, small, jobs=3, reuses_pool=True)  # another pool size is another pool
    assert not use_pool(4, parallel.POOL_MIN_SECONDS_WARM - 0.01, jobs=2, reuses_pool=True)
    parallel._LOKY_USED[2] = parallel.time.monotonic() - parallel._WARM_FOR_S - 1
    assert not use_pool(4, small, jobs=2, reuses_pool=True)  # idle workers are gone by now


def test_prestart_only_for_work_that_pays(monkeypatch):
    monkeypatch.setattr(parallel, "_LOKY_USED", {})
    with scale_out(jobs=2):
        assert not parallel.prestart(parallel.POOL_MIN_SECONDS - 0.01, ["json"])
    assert not parallel.prestart(100.0, ["json"])  # one job: no pool at all
    with scale_out(jobs=2, backend="threading"):
        assert not parallel.prestart(100.0, ["json"])
    assert parallel._LOKY_USED == {} and not parallel.pool_running(2)


def test_a_prestarted_pool_serves_the_next_map_and_ends_with_the_command(monkeypatch):
    monkeypatch.setattr(parallel, "_LOKY_USED", {})
    monkeypatch.setattr(parallel, "_STARTING", {})
    with scale_out(jobs=2):
        assert parallel.prestart(100.0, ["json"])
        assert parallel.pool_running(2)
        assert not parallel.prestart(100.0, ["json"])  # started already
        assert parallel_map(square_minus, [(3, 1), (2, 0)], jobs=2) == [8, 4]
    assert parallel._STARTING == {}  # the map waited for the start
    parallel.release_workers()
    assert not parallel.pool_running(2)
    from joblib.externals.loky import reusable_executor

    assert reusable_executor._executor is None or reusable_executor._executor._flags.shutdown


def test_import_modules_reports_a_missing_module_unless_told_to_leave_it():
    parallel.import_modules(["json", "no_such_module_of_calib"], ignore_errors=True)
    with pytest.raises(ModuleNotFoundError):
        parallel.import_modules(["no_such_module_of_calib"])


def test_a_quiet_bar_keeps_no_count():
    """Quiet jobs on threads (thread_map) open bars at the same time: they leave _BARS alone."""
    with scale_out(quiet=True):
        bar = progress(range(3), desc="quiet")
        assert parallel._BARS == 0 and bar.disable
        bar.close()
    assert parallel._BARS == 0


MARK = __import__("contextvars").ContextVar("test_mark", default="unset")


def seen_by_a_job(x):
    import threading

    s = settings()
    return x * 10, MARK.get(), (s.jobs, s.backend, s.quiet), threading.current_thread().name


def test_thread_map_keeps_order_context_and_runs_jobs_in_their_thread():
    token = MARK.set("caller's")
    try:
        with scale_out(jobs=4, backend="loky"):
            got = thread_map(seen_by_a_job, [(x,) for x in range(6, -1, -1)], threads=3, desc="jobs")
            assert settings().jobs == 4  # the caller's settings are untouched
    finally:
        MARK.reset(token)
    assert [g[0] for g in got] == [60, 50, 40, 30, 20, 10, 0]
    assert {g[1] for g in got} == {"caller's"}  # a copy of the caller's context (cache folders)
    assert {g[2] for g in got} == {(1, "loky", True)}  # a job's own heavy work stays in its thread, quiet
    assert all(g[3].startswith("calib-job") for g in got)
    assert parallel._BARS == 0


def test_thread_map_with_one_thread_runs_here():
    import threading

    got = thread_map(seen_by_a_job, [(1,), (2,)], threads=1)
    assert [g[0] for g in got] == [10, 20] and {g[3] for g in got} == {threading.current_thread().name}


def test_thread_map_raises_the_error_and_starts_no_more_jobs():
    import threading

    started = []
    gate = threading.Event()

    def job(i):
        started.append(i)
        if i == 0:
            raise ValueError("job 0 failed")
        gate.wait(5)  # job 1 holds the other thread until job 0 has failed
        return i

    items = [(i,) for i in range(8)]
    timer = threading.Timer(0.5, gate.set)
    timer.start()
    with pytest.raises(ValueError, match="job 0 failed"):
        thread_map(job, items, threads=2)
    timer.cancel()
    assert len(started) < len(items)  # the rest were cancelled, not run
