"""Shared torch machinery of the built-in adapters: safe checkpoint loading, model building, devices,
mixed precision and batching. User adapters may subclass :class:`TorchAdapter` too.

How a checkpoint becomes a module
---------------------------------
1. Default (safe): the checkpoint is a ``torch.save``-d state_dict -- or a dict holding one under
   ``state_dict``, ``model`` or ``model_state_dict`` (a "module." prefix from DataParallel is
   stripped) -- read with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain
   containers only. The architecture comes from the model config (``--model-config JSON``)::

       {"architecture": "audiomae-vit-prior", "params": {"embed_dim": 768, ...}}

   ``architecture`` is an architecture the adapter ships (see ``calib adapt --list``) or an import
   path ``"package.module:factory"`` of your own code; ``factory(**params)`` returns the
   ``nn.Module`` and the state_dict is loaded into it strictly (every key must match). A model
   config is data: an import path in it is imported only when the user allowed that module
   (``--allow-import package.module``, the adapter parameter ``allow_import``); adapter packages
   installed through the ``calib.adapters`` entry points ship their architectures by name.
2. ``--trust-checkpoint``: the checkpoint may also be a TorchScript archive (``torch.jit.save``)
   or a ``torch.export`` program (``torch.export.save``, ``.pt2``; export it with a dynamic batch
   dimension). These can run code from the file; use it only for files you made or trust. No
   model config is needed then. A whole pickled module (``torch.save(model)``) is never read:
   unpickling it would run whatever the file says; save its state_dict, or script / export it.
"""
from __future__ import annotations

import contextlib
import importlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from calib.adapters.base import Adapter, AdapterError

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AdapterError(f"device {device!r} asked for, but torch sees no CUDA GPU (torch {torch.__version__}); "
                           "use --device cpu")
    return dev


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: run in float32)."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in table:
        raise AdapterError(f"precision {precision!r}: use auto, fp32, bf16 or fp16")
    return table[precision]


def archive_kind(path: Path) -> str:
    """"torchscript", "export" (a torch.export .pt2 program) or "" (anything else, e.g. torch.save)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except zipfile.BadZipFile:
        return ""
    if any(n.endswith("/constants.pkl") or n == "constants.pkl" for n in names):
        return "torchscript"
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names):
        return "export"
    return ""


def read_checkpoint(path: str | Path, *, trust: bool = False) -> dict[str, torch.Tensor] | nn.Module:
    """A state_dict (always read with ``weights_only=True``) or, when ``trust``, the module of a
    TorchScript archive or torch.export program. Nothing is ever unpickled beyond tensors."""
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such checkpoint file")
    kind = archive_kind(path)
    if kind:
        label = {"torchscript": "a TorchScript archive", "export": "a torch.export program"}[kind]
        if not trust:
            raise AdapterError(f"{path}: {label} can run code from the file; pass --trust-checkpoint "
                               "if you trust it, or save a state_dict (torch.save(model.state_dict(), ...))")
        if kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu")
        return torch.export.load(str(path)).module()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for pickled objects; RuntimeError/EOFError for damaged files
        raise AdapterError(f"{path}: not loadable with torch.load(weights_only=True) "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). Save a state_dict "
                           "(torch.save(model.state_dict(), ...)) and give its architecture with --model-config; "
                           "a pickled module is never unpickled (it could run any code), but a TorchScript archive "
                           "(torch.jit.save) or a torch.export program is read with --trust-checkpoint") from None
    return extract_state_dict(obj, path)


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict) and _is_state_dict(obj[key]):
                obj = obj[key]
                break
    if not (isinstance(obj, dict) and _is_state_dict(obj)):
        raise AdapterError(f"{path}: holds no state_dict (a dict of tensors, or one under {list(STATE_DICT_KEYS)})")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _is_state_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def import_allowed(module: str, allowed: Iterable[str]) -> bool:
    """Whether ``module`` is one of ``allowed`` or inside a package listed there."""
    return any(module == a or module.startswith(a + ".") for a in allowed if a)


def resolve_factory(architecture: str, builtins: dict[str, Callable[..., nn.Module]],
                    allowed: Iterable[str] = ()) -> Callable[..., nn.Module]:
    """The factory an architecture names: a built-in name, or ``"package.module:factory"`` whose
    module the user allowed (``allowed``, from ``--allow-import``): a model config is data."""
    if architecture in builtins:
        return builtins[architecture]
    if ":" not in architecture:
        raise AdapterError(f"unknown architecture {architecture!r}; built-in: {sorted(builtins) or 'none'}, "
                           "or give an import path 'package.module:factory'")
    module_name, _, attr = architecture.partition(":")
    if not import_allowed(module_name, allowed):
        raise AdapterError(f"architecture {architecture!r} names the module {module_name!r} to import; a model config "
                           f"is data and cannot import code by itself: pass --allow-import {module_name} if you trust "
                           "it (or use an adapter package that ships the architecture by name)")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise AdapterError(f"architecture {architecture!r} cannot be imported: {e}") from e
    if not callable(obj):
        raise AdapterError(f"architecture {architecture!r} is not callable")
    return obj


def build_module(checkpoint: str | Path, model_config: dict | None, *, trust: bool,
                 builtins: dict[str, Callable[..., nn.Module]], allow_import: Iterable[str] = ()) -> nn.Module:
    """The eval-mode module a checkpoint (plus model config) describes; see the module docstring.
    ``allow_import``: modules an import-path architecture may come from."""
    obj = read_checkpoint(checkpoint, trust=trust)
    if isinstance(obj, nn.Module):
        if model_config:
            raise AdapterError(f"{checkpoint}: holds a whole module; drop the model config (it would be ignored)")
        return _eval(obj)
    if not model_config:
        raise AdapterError(f"{checkpoint}: holds a state_dict; give the architecture with --model-config "
                           '\'{"architecture": NAME_OR_IMPORT_PATH, "params": {...}}\'')
    if not isinstance(model_config, dict) or "architecture" not in model_config:
        raise AdapterError(f"model config must be a JSON object with an 'architecture' key; got {model_config!r}")
    unknown = set(model_config) - {"architecture", "params"}
    if unknown:
        raise AdapterError(f"model config: unknown key(s) {sorted(unknown)}; use 'architecture' and 'params'")
    factory = resolve_factory(str(model_config["architecture"]), builtins, allow_import)
    try:
        module = factory(**(model_config.get("params") or {}))
    except TypeError as e:
        raise AdapterError(f"architecture {model_config['architecture']!r}: bad params ({e})") from e
    result = module.load_state_dict(obj, strict=False)
    mismatched = list(result.missing_keys) + list(result.unexpected_keys)
    if mismatched:
        raise AdapterError(f"{checkpoint}: state_dict does not fit architecture {model_config['architecture']!r}: "
                           f"missing {list(result.missing_keys)[:8]}, unexpected {list(result.unexpected_keys)[:8]}")
    return module.eval()


def _eval(module: nn.Module) -> nn.Module:
    try:
        return module.eval()
    except NotImplementedError:  # torch.export programs fix train/eval at export time
        return module


@dataclass
class Block:
    """Consecutive model inputs of one clip: ``x`` [n, ...] with per-input metadata arrays of length n."""

    clip: str
    x: torch.Tensor
    meta: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Batch:
    x: torch.Tensor  # [B, ...]
    clip: np.ndarray  # [B] clip names
    meta: dict[str, np.ndarray]  # [B] each


def batches(blocks: Iterable[Block], size: int) -> Iterator[Batch]:
    """Fixed-size batches over the inputs of successive blocks (a batch may span clips)."""
    if size < 1:
        raise AdapterError(f"batch size must be at least 1, got {size}")
    pending: list[tuple[Block, int, int]] = []
    count = 0
    for block in blocks:
        start, n = 0, len(block.x)
        while start < n:
            take = min(size - count, n - start)
            pending.append((block, start, start + take))
            count += take
            start += take
            if count == size:
                yield _join(pending)
                pending, count = [], 0
    if pending:
        yield _join(pending)


def _join(parts: list[tuple[Block, int, int]]) -> Batch:
    try:
        x = torch.cat([b.x[s:e] for b, s, e in parts])
    except RuntimeError as err:
        shapes = sorted({(b.clip, tuple(b.x.shape[1:])) for b, _, _ in parts})
        raise AdapterError(f"model inputs of different shapes cannot share a batch: {shapes} ({err})") from None
    clip = np.concatenate([np.full(e - s, b.clip, dtype=object) for b, s, e in parts])
    keys = parts[0][0].meta.keys()
    meta = {k: np.concatenate([b.meta[k][s:e] for b, s, e in parts]) for k in keys}
    return Batch(x, clip, meta)


def progress_bar(total: float, desc: str, show: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not show, leave=False, dynamic_ncols=True)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """float64 numpy copy of a model output (autocast may hand back half precision)."""
    return t.detach().to("cpu", torch.float64).numpy()


class TorchAdapter(Adapter):
    """An adapter around one ``nn.Module`` built by :func:`build_module`.

    Subclasses list their shipped architectures in ``architectures`` and call :meth:`forward`
    inside ``run``: it applies ``torch.inference_mode`` and, on GPU, ``torch.autocast``.
    """

    architectures: ClassVar[dict[str, Callable[..., nn.Module]]] = {}
    defaults = {"model_config": None, "trust_checkpoint": False, "precision": "auto", "allow_import": []}
    param_help = {
        "model_config": "architecture of a state_dict checkpoint: {'architecture': NAME or 'pkg.mod:factory', 'params': {...}}",
        "trust_checkpoint": "also accept TorchScript / torch.export checkpoints (they can run code)",
        "allow_import": "modules a 'pkg.mod:factory' architecture may be imported from",
        "precision": "auto (bf16/fp16 autocast on GPU, fp32 on CPU), fp32, bf16 or fp16",
    }

    def load(self, checkpoint_path, device=None):
        self.device_ = resolve_device(device)
        self.amp_dtype_ = autocast_dtype(self.precision, self.device_)
        allowed = [self.allow_import] if isinstance(self.allow_import, str) else list(self.allow_import or [])
        module = build_module(checkpoint_path, self.model_config, trust=bool(self.trust_checkpoint),
                              builtins=self.architectures, allow_import=allowed)
        self.module_ = module.to(self.device_)
        return self

    def _check_loaded(self) -> None:
        if getattr(self, "module_", None) is None:
            raise AdapterError(f"adapter {self.name!r}: call load(checkpoint, device) before run()")

    def autocast(self):
        if self.amp_dtype_ is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_.type, dtype=self.amp_dtype_)

    def forward(self, *args, **kwargs):
        with torch.inference_mode(), self.autocast():
            return self.module_(*args, **kwargs)

