"""Run a test's work on several threads at once (the caches calib shares between a portfolio's
chain threads: calib.score.parallel.thread_map)."""
from __future__ import annotations

import threading
from typing import Callable


def errors_on_threads(work: Callable[[int], None], n: int = 4) -> list[BaseException]:
    """Run ``work(t)`` for t in 0..n-1, each on its own thread, all at once; the exceptions they
    raised (an assertion inside ``work`` included), for the test to check is empty."""
    errors: list[BaseException] = []

    def run(t: int) -> None:
        try:
            work(t)
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return errors
