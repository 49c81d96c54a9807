"""The registry of matchability features and the function that computes them for a table.

A feature is a plain function ``f(ctx: FeatureContext) -> array of n floats`` registered under a
name with :func:`feature`; its docstring says what it measures (the registry refuses a feature
without one). The result lands in the column ``feat_<name>``. ``ctx`` hands every feature the same
cached, vectorized intermediates (flattened points, seam-aware boxes, raw scores), so features share
work and none loops over rows in Python.

Train-only features (``train_only=True``) may look at ground truth; they are computed only when
:func:`compute_features` is called with ``train=True`` and are set to 0 otherwise, so a model
applied at inference never sees anything derived from ground truth.

Users add their own features by putting ``@feature``-decorated functions in a module and either
installing it with a ``calib.features`` entry point (installed packages are trusted, their modules
are imported with the built-ins)::

    [project.entry-points."calib.features"]
    my-feats = "mypkg.feats"

or naming it on the command line (``--feature-module mypkg.feats``, ``--allow-import mypkg``).
A module name read from a file -- a recipe's ``feature_modules``, a model folder's metadata -- is
data and is imported only when allowed that way (:func:`load_feature_modules` with ``source``):
a file someone hands over never runs code by itself. A feature's ``version`` is stored with every
model trained on it: bump it when its definition changes, and models trained on the old definition
will refuse to load.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import os
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import polars as pl

from calib.canvas.points import FlatPoints, flatten
from calib.canvas.sphere import Boxes, boxes
from calib.registry import Registry

PREFIX = "feat_"
#: built-in feature modules, imported in this order (which is the default features' order)
BUILTIN_MODULES = ("features.score", "features.geometry", "features.energy", "features.context",
                   "features.temporal", "features.gates")
#: the entry-point group through which installed packages add feature modules
ENTRY_POINT_GROUP = "calib.features"


class FeatureError(ValueError):
    """An unknown feature, a bad feature module, or a feature that cannot be computed."""


class ImportNotAllowedError(FeatureError):
    """A file names a module to import that the user has not allowed."""

    def __init__(self, module: str, source: str):
        self.module = module
        self.source = source
        super().__init__(f"{source} names the feature module {module!r}; a file is data and cannot import code "
                         f"by itself: pass --allow-import {module} if you trust that module, or install it with a "
                         f"{ENTRY_POINT_GROUP!r} entry point")


@dataclass(frozen=True)
class Feature:
    name: str
    func: Callable[["FeatureContext"], np.ndarray]
    version: int
    train_only: bool
    default: bool
    module: str
    doc: str
    #: the value of a row depends only on rows of its own clip (and that clip's ground truth), so
    #: a table may be computed a few clips at a time (:data:`CHUNK_ROWS`); False: the whole table
    per_clip: bool = False

    @property
    def column(self) -> str:
        return PREFIX + self.name

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


#: every feature by name: the built-in modules and the installed entry-point modules register theirs
#: when it is first consulted (:mod:`calib.registry`)
FEATURES = Registry("feature", ENTRY_POINT_GROUP, modules=BUILTIN_MODULES, error=FeatureError,
                    identity=lambda f: (f.module, f.func.__qualname__),
                    hint=f"add your own with --feature-module or a {ENTRY_POINT_GROUP!r} entry point",
                    plugin_objects=False)


def feature(name: str | None = None, *, version: int = 1, train_only: bool = False, default: bool = True,
            per_clip: bool = False):
    """Decorator: register ``func`` as the feature ``name`` (default: the function's name).

    ``default`` puts it in the default feature set; ``train_only`` marks features that use ground
    truth (0 at inference); ``per_clip`` declares that a row's value depends on its own clip's rows
    (and ground truth) only, so big tables are computed a few clips at a time, in bounded memory
    (every built-in feature is; a feature comparing clips must leave it False)."""

    def deco(func):
        fname = name or func.__name__
        doc = inspect.getdoc(func) or ""
        if not doc.strip():
            raise FeatureError(f"feature {fname!r} ({func.__module__}) has no docstring saying what it measures")
        if not fname.isidentifier():
            raise FeatureError(f"feature name {fname!r} must be an identifier")
        FEATURES.add(fname, Feature(fname, func, int(version), bool(train_only), bool(default), func.__module__, doc,
                                    bool(per_clip)))
        return func

    return deco


def unregister(name: str) -> None:
    """Remove a feature (e.g. one a test registered); unknown names are ignored."""
    FEATURES.remove(name)


#: modules the user allowed in this process (command-line flags, explicit loads), besides the
#: built-ins and the installed entry points
_ALLOWED: set[str] = set()


def plugin_modules() -> dict[str, str]:
    """Entry-point name -> module of the installed packages' ``calib.features`` entry points."""
    return FEATURES.plugin_modules()


def _covers(allowed: str, module: str) -> bool:
    return module == allowed or module.startswith(allowed + ".")


def is_import_allowed(module: str) -> bool:
    """Whether ``module`` may be imported because a file names it: a built-in feature module, an
    installed ``calib.features`` entry point, or a module (or a package above it) the user allowed."""
    trusted = [*BUILTIN_MODULES, *plugin_modules().values(), *_ALLOWED]
    return any(_covers(a, module) for a in trusted)


def allow_imports(modules: Iterable[str]) -> None:
    """Allow ``modules`` (and the modules inside them, for packages) for the rest of the process."""
    _ALLOWED.update(m.strip() for m in modules if m and m.strip())


@contextlib.contextmanager
def allowed_imports(modules: Iterable[str]) -> Iterator[None]:
    """Allow ``modules`` inside the ``with`` block only (``--allow-import`` of one command)."""
    before = set(_ALLOWED)
    allow_imports(modules)
    try:
        yield
    finally:
        _ALLOWED.clear()
        _ALLOWED.update(before)


def check_imports_allowed(modules: Iterable[str], source: str) -> None:
    """Raise :class:`ImportNotAllowedError` for the first of ``modules`` (read from ``source``, a
    file) that is not allowed; nothing is imported."""
    for mod in modules:
        if not is_import_allowed(mod):
            raise ImportNotAllowedError(mod, source)


def load_feature_modules(modules: Iterable[str], *, source: str | None = None) -> list[str]:
    """Import feature modules by import path (their ``@feature`` functions register).

    ``source`` None: the names come from the user directly (a command-line flag, a call in code);
    they are imported and allowed from then on. ``source`` given: the names were read from that
    file (a recipe, a model's metadata) and each must be allowed first (:func:`is_import_allowed`),
    else :class:`ImportNotAllowedError` is raised before anything is imported."""
    modules = [m.strip() for m in modules if m and m.strip()]
    if source is not None:
        check_imports_allowed(modules, source)
    loaded = []
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise FeatureError(f"cannot import feature module {mod!r}: {e}") from e
        loaded.append(mod)
    if source is None:
        allow_imports(loaded)
    return loaded


def registry() -> dict[str, Feature]:
    """All registered features by name, built-ins first in their modules' order."""
    return FEATURES.registered()


def get_feature(name: str) -> Feature:
    reg = registry()
    if name not in reg:
        raise FEATURES.unknown(name)
    return reg[name]


def default_features() -> list[str]:
    return [f.name for f in registry().values() if f.default]


def resolve(names: Sequence[str] | str | None) -> list[Feature]:
    """Features for a list of names; ``None`` or the name ``default`` expand to the default set,
    ``all`` to every registered feature. Duplicates are dropped, order kept."""
    if names is None:
        names = ["default"]
    elif isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: dict[str, Feature] = {}
    for n in names:
        n = n.removeprefix(PREFIX)
        expanded = default_features() if n == "default" else list(registry()) if n == "all" else [n]
        for m in expanded:
            out.setdefault(m, get_feature(m))
    if not out:
        raise FeatureError("no features selected")
    return list(out.values())


class FeatureContext:
    """What a feature function gets: the detections plus shared, lazily computed intermediates.

    ``truth`` (a truth table) and ``labels`` (0/1 matchable per detection, aligned with rows) are
    present only when computing train-only features."""

    FRAME_KEYS = ("system", "clip", "frame")
    CLASS_KEYS = ("system", "clip", "frame", "class_id")

    def __init__(self, detections: pl.DataFrame, *, truth: pl.DataFrame | None = None,
                 labels: np.ndarray | None = None):
        self.detections = detections
        self.truth = truth
        self.labels = labels
        self._cache: dict = {}

    def cached(self, key: str, compute: Callable[[], object]):
        """Share an intermediate between features (computed on first use)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    @property
    def n(self) -> int:
        return self.detections.height

    @cached_property
    def points(self) -> FlatPoints:
        """All points of the detections as flat arrays (x, y, e, per-detection ``start``/``count``,
        ``row`` of each point, segment reductions, ``seam_x``): :class:`calib.canvas.points.FlatPoints`."""
        return flatten(self.detections.get_column("points"))

    @cached_property
    def box(self) -> Boxes:
        """Seam-aware bounding box of each detection (x0, y0, w, h, cx, cy; all-zero without
        points): :func:`calib.canvas.sphere.boxes`."""
        return boxes(self.points).zero_filled()

    @cached_property
    def score(self) -> np.ndarray:
        """The upstream raw score: ``score_raw`` when a stage has already rewritten ``score``."""
        df = self.detections
        s = pl.col("score").cast(pl.Float64)
        expr = pl.coalesce(pl.col("score_raw").cast(pl.Float64), s) if "score_raw" in df.columns else s
        return df.select(expr).to_series().to_numpy().astype(np.float64, copy=False)

    def keyed(self, **columns: np.ndarray) -> pl.DataFrame:
        """The key columns (system, clip, frame, class_id) with a row index ``_row`` and extra arrays."""
        df = self.detections.select(list(self.CLASS_KEYS)).with_row_index("_row")
        return df.with_columns([pl.Series(k, v) for k, v in columns.items()]) if columns else df

    def require(self, what: str, feature_name: str):
        value = getattr(self, what)
        if value is None:
            raise FeatureError(f"feature {feature_name!r} is train-only and needs {what}; "
                               "compute it with train=True and the truth table / labels")
        return value


#: rows computed together by the per-clip features (whole clips, about this many rows): the flat
#: points and the sorts' temporaries of a whole dev table (530k detections, 38M points) took
#: 4-5 GiB at once; a chunk of 65k rows a tenth of that, at the same speed
CHUNK_ROWS = 1 << 16


def clip_chunks(detections: pl.DataFrame, rows: int | None = None) -> list[slice | np.ndarray]:
    """The table's rows in groups of whole clips of about ``rows`` rows (:data:`CHUNK_ROWS`), in
    table order: slices when each clip's rows are together, else row indices (clip by clip)."""
    rows = CHUNK_ROWS if rows is None else rows
    n = detections.height
    if n <= rows or "clip" not in detections.columns:
        return [slice(0, n)]
    from calib.tables import clip_runs

    names, starts, stops = clip_runs(detections)
    if len(set(names)) == len(names):  # one run per clip: cut between runs
        cuts = [0]
        for stop in stops:
            if stop - cuts[-1] >= rows or stop == n:
                cuts.append(stop)
        return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    order, ends = _clip_order(detections)
    cuts = [0]
    for end in ends.tolist():
        if end - cuts[-1] >= rows or end == n:
            cuts.append(end)
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:])]


def _clip_order(detections: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The rows clip by clip (table order within a clip) and where each clip's rows end."""
    code = detections.select(pl.col("clip").rank("dense")).to_series().to_numpy().astype(np.int64) - 1
    return np.argsort(code, kind="stable"), np.cumsum(np.bincount(code))


def _rows(detections: pl.DataFrame, part: slice | np.ndarray) -> pl.DataFrame:
    """The rows ``part`` (a :func:`clip_chunks` part) of the table: a slice where it is one."""
    return detections.slice(part.start, part.stop - part.start) if isinstance(part, slice) else detections[part]


def _values(f: Feature, ctx: "FeatureContext") -> np.ndarray:
    values = f.func(ctx)
    if isinstance(values, pl.Series):
        values = values.to_numpy()
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (ctx.n,):
        raise FeatureError(f"feature {f.name!r} ({f.module}) returned shape {values.shape}, expected ({ctx.n},)")
    return values


def compute_features(detections: pl.DataFrame, names: Sequence[str] | str | None = None, *,
                     train: bool = False, truth: pl.DataFrame | None = None,
                     labels: np.ndarray | None = None) -> pl.DataFrame:
    """A frame of ``feat_<name>`` float64 columns, one row per detection, in the table's order.

    With ``train=False`` (inference) train-only features are 0 and never computed. The built-in
    features of a clip whose rows were computed before in this process (the same rows in the same
    order: a portfolio's chains fit and apply rerankers on the same clips again and again) are
    taken from :data:`FEATURE_CACHE`."""
    feats = resolve(names)
    n = detections.height
    values = {f.name: np.zeros(n) for f in feats}  # train-only features at inference stay 0
    todo = [f for f in feats if train or not f.train_only]
    keyed = FEATURE_CACHE.budget > 0 and set(DIGEST_COLUMNS) <= set(detections.columns)
    cached = [f for f in todo if _cacheable(f)] if keyed else []
    if cached and n:
        missing = FEATURE_CACHE.fill(detections, cached, values)
        if missing:  # the clips not cached: computed together, then cached clip by clip
            from calib.tables import take_rows

            rest = np.sort(np.concatenate([r for r, _ in missing]))
            keep = np.zeros(n, bool)
            keep[rest] = True
            sub = detections if rest.size == n else take_rows(detections, keep)
            got = _compute(sub, cached, truth=truth, labels=None if labels is None else np.asarray(labels)[rest])
            for f in cached:
                values[f.name][rest] = got[f.name]
            FEATURE_CACHE.store(cached, [(np.searchsorted(rest, r), d) for r, d in missing], got)
        todo = [f for f in todo if f not in cached]
    if todo:
        values.update(_compute(detections, todo, truth=truth, labels=labels))
    cols = [pl.Series(f.column, values[f.name], dtype=pl.Float64) for f in feats]
    return pl.DataFrame(cols, schema={c.name: pl.Float64 for c in cols}) if cols else pl.DataFrame()


def _compute(detections: pl.DataFrame, todo: list[Feature], *, truth, labels) -> dict[str, np.ndarray]:
    """The features ``todo`` of every row: per-clip ones a few whole clips at a time."""
    n = detections.height
    values = {f.name: np.zeros(n) for f in todo}
    chunked = [f for f in todo if f.per_clip]
    whole = [f for f in todo if not f.per_clip]
    parts = clip_chunks(detections) if chunked else []
    if len(parts) == 1:  # one chunk: the whole table, one context for every feature
        whole, chunked, parts = todo, [], []
    for part in parts:
        sub = _rows(detections, part)
        sub_truth = None
        if truth is not None:
            from calib.tables import restrict_clips

            sub_truth = restrict_clips(truth, sub.get_column("clip").unique().to_list())
        ctx = FeatureContext(sub, truth=sub_truth, labels=None if labels is None else np.asarray(labels)[part])
        for f in chunked:
            values[f.name][part] = _values(f, ctx)
    if whole:
        ctx = FeatureContext(detections, truth=truth, labels=labels)
        for f in whole:
            values[f.name] = _values(f, ctx)
    return values


def _cacheable(f: Feature) -> bool:
    """Built-in per-clip features that read no ground truth: they read only the columns
    :func:`clip_digests` hashes."""
    return f.per_clip and not f.train_only and f.module in BUILTIN_MODULES


#: what :func:`clip_digests` reads (the cache is not used for a table without them)
DIGEST_COLUMNS = ("system", "clip", "frame", "class_id", "score", "points")


def clip_digests(detections: pl.DataFrame) -> tuple[list[np.ndarray], list[bytes]]:
    """(its rows in table order, content digest) of each clip of the table. The digest covers
    what built-in features read of a row, in order: its points (every bit of x, y, e, polygon by
    polygon: :func:`calib.canvas.points.row_hashes`, 128 bits), its raw score (``score_raw`` where
    set, else ``score``), system, frame and class."""
    import hashlib

    from calib.canvas.points import row_hashes

    order, ends = _clip_order(detections)
    rows = np.split(order, ends[:-1])
    lanes = np.empty((detections.height, 3), np.uint64)
    for part in clip_chunks(detections):  # the points flattened a few clips at a time
        sub = _rows(detections, part)
        lanes[part, :2] = row_hashes(flatten(sub.get_column("points")), extra=FeatureContext(sub).score)
    keys = detections.select(pl.col("system").cast(pl.String), pl.col("frame").cast(pl.Int64),
                             pl.col("class_id").cast(pl.Int64))
    lanes[:, 2] = keys.hash_rows(seed=0).to_numpy()  # strings and integers: no float subtleties
    names = detections.get_column("clip").cast(pl.String).to_numpy()
    digests = []
    for r in rows:
        name = str(names[r[0]])
        h = hashlib.blake2b(digest_size=20)
        h.update(name.encode())
        h.update(np.int64(r.size).tobytes())
        h.update(np.ascontiguousarray(lanes[r]).tobytes())
        digests.append(h.digest())
    return rows, digests


class FeatureCache:
    """Built-in feature values of clips seen before in this process, by (clip content digest,
    feature identities), least recently used dropped first beyond ``budget`` bytes
    (``CALIB_FEATURE_CACHE_MIB``, default 512; 0 turns it off)."""

    def __init__(self, budget: int):
        self.budget = budget
        self._entries: dict[tuple, np.ndarray] = {}
        self._bytes = 0

    @staticmethod
    def _key(digest: bytes, feats: list[Feature]) -> tuple:
        return digest, tuple((f.module, f.name, f.version) for f in feats)

    def fill(self, detections: pl.DataFrame, feats: list[Feature], values: dict) -> list[tuple[np.ndarray, bytes]]:
        """Copy the cached clips' values of ``feats`` into ``values``; returns (rows, digest) of
        each clip not cached."""
        rows, digests = clip_digests(detections)
        missing = []
        for r, d in zip(rows, digests):
            key = self._key(d, feats)
            got = self._entries.pop(key, None)
            if got is None:
                missing.append((r, d))
                continue
            self._entries[key] = got  # most recently used last
            for j, f in enumerate(feats):
                values[f.name][r] = got[:, j]
        return missing

    def store(self, feats: list[Feature], clips: list[tuple[np.ndarray, bytes]], values: dict) -> None:
        """Keep the values of ``feats`` of each clip (its rows in ``values``' arrays, its digest)."""
        for r, d in clips:
            block = np.column_stack([values[f.name][r] for f in feats])
            key = self._key(d, feats)
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._entries[key] = block
            self._bytes += block.nbytes
        while self._bytes > self.budget and self._entries:
            self._bytes -= self._entries.pop(next(iter(self._entries))).nbytes

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


#: the process's cache of built-in feature values per clip
FEATURE_CACHE = FeatureCache(int(os.environ.get("CALIB_FEATURE_CACHE_MIB", "512")) * 2**20)


def versions(feats: Sequence[Feature]) -> list[dict]:
    """What a model records about its features, to refuse a mismatch when loading."""
    return [{"name": f.name, "version": f.version, "module": f.module, "train_only": f.train_only} for f in feats]
