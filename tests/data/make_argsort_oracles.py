"""Record numpy's own argsort of tie-heavy float64 arrays on this machine, with its AVX-512 kernel
and with its AVX2 kernel, as test data (tests/data/argsort_oracles.npz) for
tests/score/test_argsort.py, so machines without AVX-512 (or AVX2) still check the re-enactments
in calib/score/argsort.py against the real kernels.

    python tests/data/make_argsort_oracles.py [--out tests/data/argsort_oracles.npz]

Needs an x86-64 CPU where numpy dispatches argsort to x86-simd-sort's AVX-512 kernel; the AVX2
outputs come from a child process started with AVX-512 disabled (NPY_DISABLE_CPU_FEATURES). The
inputs are generated from fixed seeds, so a rerun on another such machine writes the same arrays.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "argsort_oracles.npz"
AVX512_TARGETS = ("X86_V4", "AVX512_SKX")  # numpy >= 2.3 names the target X86_V4, older ones AVX512_SKX
AVX2_TARGETS = ("X86_V3", "AVX2")
DISABLE_AVX512 = "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX"


def simd_found() -> list[str]:
    """The dispatch targets numpy's runtime finds on this CPU (what np.show_runtime prints as found)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]


def numpy_argsort_kernel() -> str | None:
    """"avx512" or "avx2": the x86-simd-sort kernel numpy's argsort of float64 runs here, or None."""
    found = set(simd_found())
    if found & set(AVX512_TARGETS):
        return "avx512"
    if found & set(AVX2_TARGETS):
        return "avx2"
    return None


def tie_heavy_inputs(seed: int = 2026) -> dict[str, np.ndarray]:
    """Named float64 arrays full of ties: every network size, partitions from 257 keys up, sorted
    and reversed runs, few distinct values, and heavy-tailed ones that exhaust quicksort's depth
    (then std::sort takes over)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, n in enumerate([2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255,
                           256, 257, 258, 300, 383, 511, 512, 513, 777, 1000, 1024, 1500, 2049, 4097, 12000]):
        for j, share in enumerate((2, 10, 50)):
            distinct = int(rng.integers(1, max(2, n // share) + 1))
            vals = -np.round(rng.random(distinct), 2)
            out[f"random_{i:02d}_{j}_n{n}"] = vals[rng.integers(0, distinct, n)]
    for n in (300, 1000, 5000):
        out[f"descending_n{n}"] = np.sort(np.round(rng.random(n), 1))[::-1].copy()
        out[f"organ_pipe_n{n}"] = (np.r_[np.arange(n // 2), np.arange(n - n // 2)[::-1]] // 3).astype(float)
        out[f"sawtooth_n{n}"] = (np.arange(n) % 17).astype(float)
        out[f"two_values_n{n}"] = rng.integers(0, 2, n).astype(float)
        out[f"mostly_one_value_n{n}"] = np.where(rng.random(n) < 0.99, 0.5, np.round(rng.random(n), 3))
    for i in range(12):
        n = int(rng.integers(600, 4000))
        a = np.floor(-np.log(rng.random(n)) * rng.uniform(0.5, 40))
        out[f"heavy_tail_{i:02d}_n{n}"] = -a if i % 2 else a
    return out


def _argsorts(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.argsort(a).astype(np.uint16) for k, a in arrays.items()}  # every array has < 65536 keys


def avx2_argsorts(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """numpy's argsort of each array in a child process with AVX-512 disabled."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, **arrays)
        code = ("import sys, numpy as np\n"
                f"sys.path.insert(0, {str(HERE)!r})\n"
                "from make_argsort_oracles import numpy_argsort_kernel\n"
                "sys.exit(3) if numpy_argsort_kernel() != 'avx2' else None\n"
                "d = np.load(sys.argv[1])\n"
                "np.savez(sys.argv[2], **{k: np.argsort(d[k]).astype(np.uint16) for k in d.files})\n")
        env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=DISABLE_AVX512)
        proc = subprocess.run([sys.executable, "-c", code, str(src), str(dst)], env=env, capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise SystemExit(f"make_argsort_oracles: numpy's AVX2 kernel did not run in a child process "
                             f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        with np.load(dst) as z:
            return {k: z[k] for k in z.files}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"npz to write (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    if numpy_argsort_kernel() != "avx512":
        print(f"make_argsort_oracles: numpy does not run its AVX-512 argsort here (found: {simd_found()})",
              file=sys.stderr)
        return 2
    inputs = tie_heavy_inputs()
    avx512, avx2 = _argsorts(inputs), avx2_argsorts(inputs)
    meta = {"numpy": np.__version__, "simd_found": simd_found(), "cases": list(inputs)}
    arrays = {"meta": np.array(json.dumps(meta))}
    for k in inputs:
        arrays[f"keys/{k}"] = inputs[k]
        arrays[f"avx512/{k}"] = avx512[k]
        arrays[f"avx2/{k}"] = avx2[k]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, args.out)
    n = sum(a.size for a in inputs.values())
    print(f"{args.out}: {len(inputs)} arrays, {n:,} keys, {args.out.stat().st_size:,} bytes (numpy {np.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
