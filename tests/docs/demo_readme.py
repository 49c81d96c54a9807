"""Rewrite README.md's demo block from a real ``calib demo demo-out`` run.

    .venv/bin/python tests/docs/demo_readme.py

runs the demo in a temporary folder (as README.md writes it: default options) and replaces what
lies between the demo-block markers of README.md with the table the demo printed and the wall time
it took here, with the machine's CPU count and load. Nothing in the block is typed by hand;
``tests/docs/test_readme_examples.py`` checks that the table is what ``calib demo`` prints (the
time line, which varies from run to run, is not compared).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from doc_examples import DEMO_BEGIN, DEMO_END, README, run_example  # noqa: E402


def demo_block(table: str, seconds: float, cpus: int | None, load: float) -> str:
    return (f"{DEMO_BEGIN}\n```\n{table}```\n\n"
            f"Run time: {seconds:.0f} s measured by `tests/docs/demo_readme.py` on {cpus} CPU cores "
            f"(load average {load:.1f} when it started).\n{DEMO_END}")


def replace_block(text: str, block: str) -> str:
    if DEMO_BEGIN not in text or DEMO_END not in text:
        raise SystemExit(f"{README}: no demo block markers ({DEMO_BEGIN} ... {DEMO_END})")
    head, rest = text.split(DEMO_BEGIN, 1)
    return head + block + rest.split(DEMO_END, 1)[1]


def main() -> int:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="calib-demo-") as tmp:
        t0 = time.perf_counter()
        res = run_example(["demo", "demo-out"], Path(tmp))
        seconds = time.perf_counter() - t0
        if res.rc != 0:
            print(res.err, file=sys.stderr)
            print(f"calib demo exited {res.rc}; README.md left as it was", file=sys.stderr)
            return 1
        table = (Path(tmp) / "demo-out" / "demo_table.txt").read_text()
    text = replace_block(README.read_text(), demo_block(table, seconds, os.cpu_count(), load))
    tmp_readme = README.with_name(f".{README.name}.tmp")
    tmp_readme.write_text(text)
    os.replace(tmp_readme, README)
    print(f"README.md demo block rewritten ({seconds:.0f} s run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
