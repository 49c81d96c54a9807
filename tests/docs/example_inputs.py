"""What the documented examples take for granted in the user's folder, made on first use.

An example that names ``runs/modelA`` means "your model's prediction folder", ``dev.parquet`` "the
dev clips' detections as a table", ``prior.pt`` "your checkpoint". The tests run the examples as
written in one folder per document; before each example, every input of :data:`INPUTS` that it
names and that is not there yet is made here, from the synthetic data (``data/``) an earlier example
of the same document wrote with ``calib synth``. Each entry says what stands in for what.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import polars as pl


def _data(ws: Path) -> Path:
    data = ws / "data"
    if not (data / "gt").is_dir():
        raise AssertionError(f"{ws}: the examples before this one should have written data/ with calib synth")
    return data


def _ingest(ws: Path, folder: str, system: str | None = None) -> pl.DataFrame:
    from calib.io.dcase import ingest_predictions

    return ingest_predictions([ws / folder], system, progress=False)[0]


def _write(df: pl.DataFrame, path: Path) -> None:
    from calib.tables import write_table

    write_table(df, path, "detections")


def model_a(ws: Path) -> None:
    shutil.copytree(_data(ws) / "systems" / "lowthr", ws / "runs" / "modelA")


def dev_and_test_tables(ws: Path) -> None:
    from calib.io.dcase import ingest_truth

    labeled = set(ingest_truth(_data(ws) / "gt", progress=False)[0]["clip"].unique().to_list())
    dets = _ingest(ws, "data/systems/lowthr")
    _write(dets.filter(pl.col("clip").is_in(sorted(labeled))), ws / "dev.parquet")
    _write(dets.filter(~pl.col("clip").is_in(sorted(labeled))), ws / "test.parquet")


def table_of(folder: str, name: str, system: str | None = None) -> Callable[[Path], None]:
    def make(ws: Path) -> None:
        _data(ws)
        if folder.startswith("runs/modelA") and not (ws / folder).exists():
            model_a(ws)
        _write(_ingest(ws, folder, system), ws / name)

    return make


def starss_metadata(ws: Path) -> None:
    """STARSS22/23 dev metadata as it comes: split folders of 5-column CSVs
    (frame, class, source, azimuth, elevation; integers, no header)."""
    rows = {"dev-train-sony/fold3_room21_mix001.csv": ["0,1,0,-50,10", "1,1,0,-48,10", "1,4,1,120,-5"],
            "dev-test-tau/fold4_room2_mix002.csv": ["3,0,0,170,0", "4,0,0,171,1", "4,7,2,-179,30"]}
    for name, lines in rows.items():
        f = ws / "STARSS23" / "metadata_dev" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("\n".join(lines) + "\n")


def seld_cartesian(ws: Path) -> None:
    """A SELD model's output as 5-column Cartesian CSVs (frame, class, x, y, z), multi-ACCDOA style:
    active-class vectors shorter than 1."""
    f = ws / "seld_out" / "fold4_room2_mix002.csv"
    f.parent.mkdir(parents=True)
    f.write_text("0,1,0.5,0.3,0.1\n1,1,0.48,0.33,0.12\n2,8,-0.6,0.1,-0.3\n")


def portfolio_grid(ws: Path) -> None:
    from doc_examples import help_block

    (ws / "grid.toml").write_text(help_block("calib portfolio", "grid file example"))


def feature_module(ws: Path) -> None:
    (ws / "mypkg").mkdir()
    (ws / "mypkg" / "__init__.py").write_text("")
    (ws / "mypkg" / "feats.py").write_text(textwrap.dedent('''
        import numpy as np

        from features import feature


        @feature()
        def my_feat(ctx):
            """The squared upstream score (an example of a feature of one's own)."""
            return np.square(np.asarray(ctx.score, dtype=np.float64))
    '''))


def audio(ws: Path) -> None:
    import numpy as np
    import soundfile as sf

    (ws / "audio").mkdir()
    for k, name in enumerate(("clip1", "clip2")):
        x = np.random.default_rng(k).standard_normal((24000 * 3, 4)).astype(np.float32) * 0.1
        sf.write(str(ws / "audio" / f"{name}.wav"), x, 24000, subtype="FLOAT")


TINY_VIT = {"img_size": [208, 128], "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 4, "head_hidden": [8]}


def prior_checkpoint(ws: Path) -> None:
    """A tiny AudioMAE-shaped prior model (random weights) and its config."""
    import torch

    from calib.adapters.vit import AudioPriorNet

    torch.manual_seed(0)
    torch.save(AudioPriorNet(**TINY_VIT).state_dict(), ws / "prior.pt")
    (ws / "prior.json").write_text(json.dumps({"architecture": "audiomae-vit-prior", "params": TINY_VIT}))


MYMODELS = '''
import torch
from torch import nn


class SeldNet(nn.Module):
    """A tiny multi-ACCDOA model: logmel_iv [B, 7, T, F] -> [B, 50 frames, 3 tracks, 13 classes, 3]."""

    def __init__(self, frames: int = 50, hidden: int = 16):
        super().__init__()
        self.frames = frames
        self.conv = nn.Conv1d(7, hidden, kernel_size=3, padding=1)
        self.out = nn.Linear(hidden, 3 * 13 * 3)

    def forward(self, x):
        h = torch.relu(self.conv(x.mean(dim=-1)))
        h = nn.functional.adaptive_avg_pool1d(h, self.frames).transpose(1, 2)
        return torch.tanh(4.0 * self.out(h)).reshape(-1, self.frames, 3, 13, 3)
'''


def seld_checkpoint(ws: Path) -> None:
    """``mymodels.py`` (the team's own architecture, importable from the folder the command runs
    in) and a state_dict of it."""
    import torch

    (ws / "mymodels.py").write_text(MYMODELS)
    spec = importlib.util.spec_from_file_location("_doc_example_mymodels", ws / "mymodels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.SeldNet().state_dict(), ws / "seld.pt")


def instance_torchscript(ws: Path) -> None:
    """A TorchScript instance model (what --trust-checkpoint is for): per frame one detection of
    class 1 whose 4 x 4 energy map and score follow the input's mean."""
    import torch
    from torch import nn

    class TinyInstance(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(1, 2)

        def forward(self, x: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
            out: List[Dict[str, torch.Tensor]] = []
            for i in range(x.shape[0]):
                h = torch.sigmoid(self.lin(x[i].mean().reshape(1, 1)))
                out.append({"boxes": torch.tensor([[100.0, 60.0, 160.0, 100.0]]), "labels": torch.tensor([2]),
                            "scores": h[:, 0], "masks": h[0, 1] * torch.ones(1, 1, 4, 4),
                            "distances": h[:, 1]})
            return out

    torch.manual_seed(0)
    with warnings.catch_warnings():  # TorchScript is deprecated in torch, still what users hand over
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(TinyInstance()), str(ws / "inst.ts"))


@dataclass
class Input:
    path: str  # what an example names (a file, a folder, a module)
    stands_for: str
    make: Callable[[Path], None]
    creates: str = ""  # the path whose presence means it is there (default: ``path``)


INPUTS = [
    Input("runs/modelA", "a model's prediction folder: a copy of data/systems/lowthr", model_a),
    Input("dev.parquet", "the dev clips' detections of data/systems/lowthr (test.parquet: the evaluation clips')",
          dev_and_test_tables),
    Input("test.parquet", "as dev.parquet", dev_and_test_tables),
    Input("reranked.parquet", "a detections table of system modelA (runs/modelA)", table_of("runs/modelA", "reranked.parquet", "modelA")),
    Input("dets.parquet", "a detections table (data/systems/lowthr)", table_of("data/systems/lowthr", "dets.parquet")),
    Input("dense.parquet", "a dense system's table (data/systems/dense)", table_of("data/systems/dense", "dense.parquet")),
    Input("sparse.parquet", "a sparse system's table (data/systems/sparse)", table_of("data/systems/sparse", "sparse.parquet")),
    Input("STARSS23/metadata_dev", "STARSS23-style dev metadata: split folders of 5-column CSVs", starss_metadata),
    Input("seld_out/", "a SELD model's Cartesian (x, y, z) CSV output, vectors shorter than 1", seld_cartesian),
    Input("grid.toml", "the grid file example of calib portfolio --help", portfolio_grid),
    Input("mypkg.feats", "a feature module of one's own (mypkg/feats.py: my_feat)", feature_module, "mypkg"),
    Input("audio/", "4-channel audio clips (3 s of noise)", audio),
    Input("prior.pt", "a tiny audio-prior checkpoint with its prior.json", prior_checkpoint),
    Input("seld.pt", "a tiny SELD model of one's own (mymodels.py) and its checkpoint", seld_checkpoint),
    Input("inst.ts", "a tiny TorchScript instance model", instance_torchscript),
]


OUTPUT_OPTIONS = ("--out", "--json", "--matches", "--report", "--cache")


def provide(argv: list[str], ws: Path) -> list[str]:
    """Make the inputs ``argv`` names that ``ws`` lacks; the paths made."""
    made = []
    # what an example writes (--out FILE) is its output, not an input to make
    named = {a.rstrip("/") for i, a in enumerate(argv) if not (i and argv[i - 1] in OUTPUT_OPTIONS)}
    for item in INPUTS:
        if item.path.rstrip("/") in named and not (ws / (item.creates or item.path)).exists():
            item.make(ws)
            made.append(item.path)
    return made


def _no_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return True
    return not torch.cuda.is_available()


#: example as written -> (the arguments run instead, why); the rest of the example runs as written
SUBSTITUTES: dict[str, tuple[Callable[[list[str]], list[str]], str]] = {
    "calib synth big/ --clips 78 --frames 1500 --eval-clips 20 --systems lowthr,dense,sparse --jobs 2": (
        lambda a: [*a[:2], "--clips", "4", "--frames", "20", "--eval-clips", "1", *a[8:]],
        "4.8 GB written in minutes; the same options at 4 + 1 clips x 20 frames"),
    "calib score runs/modelA data/gt --backend dask --scheduler tcp://10.0.0.5:8786": (
        lambda a: a[:-2],
        "no Dask scheduler listens at that address here: without --scheduler calib starts a local in-process "
        "cluster, which runs the same code path"),
}


def substitute(text: str, argv: list[str]) -> tuple[list[str], str]:
    """The arguments to run for an example, and why they differ from the written ones ("" if not)."""
    if text in SUBSTITUTES:
        change, why = SUBSTITUTES[text]
        return change(argv), why
    if argv[:1] == ["adapt"] and "--device" in argv and argv[argv.index("--device") + 1] == "cuda" and _no_cuda():
        i = argv.index("--device")
        return [*argv[:i + 1], "cpu", *argv[i + 2:]], "no CUDA device here: the same run on the CPU"
    return argv, ""
