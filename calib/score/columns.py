"""The annotations of one clip column by column (:class:`ClipAnnotations`), and content keys.

The fast dcase2026 engine works on these rather than on one Python object per annotation: a calib
table, a DCASE file's parsed columns or a list of :class:`~calib.score.annotations.Annotation`
become flat arrays (all points in one (n_points, 3) block, Arrow-style offsets for polygons and
annotations), so a clip of thousands of detections costs numpy passes, not thousands of objects.

Two hashes, for two purposes:

* :meth:`ClipAnnotations.render_keys`: a 128-bit key per annotation of everything its dcase2026
  map and its bucket depend on (frame, class, polygon structure, the points as float32, which is
  all the renderer reads). The prediction-side cache (:mod:`calib.score.pred_cache`) stores IoU
  rows under it. Computed for whole columns at once (two independent 64-bit lanes of
  multiply-xorshift mixing, summed per annotation), no Python per annotation.
* :meth:`ClipAnnotations.digest`: BLAKE2b of the clip's exact arrays (float64 points, ids,
  distances), the GT cache key of a clip that comes from a table.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from calib.constants import N_CLASSES
from calib.score.annotations import Annotation
from calib.score.gt_maps import concat_ranges

_U32 = np.uint64(32)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, in place (a bijection of uint64 that spreads every input bit)."""
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _murmur(z: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer, in place (another bijection: the second, independent lane)."""
    z ^= z >> np.uint64(33)
    z *= np.uint64(0xFF51AFD7ED558CCD)
    z ^= z >> np.uint64(33)
    z *= np.uint64(0xC4CEB9FE1A85EC53)
    z ^= z >> np.uint64(33)
    return z


#: (finalizer, seeds) of the two lanes of a render key
_LANES = ((_splitmix, (0x9E3779B97F4A7C15, 0xD1B54A32D192ED03, 0x8CB92BA72F3D8DD7)),
          (_murmur, (0x2545F4914F6CDD1D, 0x6A09E667F3BCC909, 0xBB67AE8584CAA73B)))


def _segment_sums(t: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of t of the given sizes (empty runs sum to 0; uint64 modulo 2**64)."""
    c = np.zeros(t.size + 1, dtype=t.dtype)
    np.cumsum(t, out=c[1:])
    ends = np.cumsum(sizes)
    return c[ends] - c[ends - sizes]  # uint64 arithmetic wraps: sums modulo 2**64


@dataclass
class ClipAnnotations:
    """The annotations of one clip, column-wise: annotation k has polygons
    ``ann_off[k]:ann_off[k+1]``, polygon j the points ``xyz[poly_off[j]:poly_off[j+1]]``
    (offsets start at 0). ``index`` is the det_id / ann_id (the position in the file)."""

    frame: np.ndarray  # int64
    cls: np.ndarray  # int64
    index: np.ndarray  # int64
    score: np.ndarray  # float64, NaN for ground truth
    distance: np.ndarray  # float64, NaN where absent
    has_distance: np.ndarray  # bool
    xyz: np.ndarray  # (n_points, 3) float64
    ann_off: np.ndarray  # int64, n + 1
    poly_off: np.ndarray  # int64, n_polygons + 1

    def __len__(self) -> int:
        return int(self.frame.size)

    def __post_init__(self):
        # render keys computed so far (they travel with the object to a worker): row k's key is
        # _keys[k] where _keyed[k]
        self._keys = np.zeros((self.frame.size, 2), dtype=np.uint64)
        self._keyed = np.zeros(self.frame.size, dtype=bool)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_annotations(cls, anns) -> "ClipAnnotations":
        anns = list(anns)
        polys = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for a in anns for p in a.polygons]
        n_poly = np.array([len(a.polygons) for a in anns], dtype=np.int64)
        return cls(
            frame=np.array([a.frame for a in anns], dtype=np.int64),
            cls=np.array([a.class_id for a in anns], dtype=np.int64),
            index=np.array([a.index for a in anns], dtype=np.int64),
            score=np.array([a.score for a in anns], dtype=np.float64),
            distance=np.array([math.nan if a.distance is None else a.distance for a in anns], dtype=np.float64),
            has_distance=np.array([a.distance is not None for a in anns], dtype=bool),
            xyz=np.concatenate(polys) if polys else np.zeros((0, 3)),
            ann_off=np.concatenate(([0], np.cumsum(n_poly))).astype(np.int64),
            poly_off=np.concatenate(([0], np.cumsum([len(p) for p in polys], dtype=np.int64))).astype(np.int64),
        )

    @classmethod
    def from_flat(cls, *, frame, class_id, index, score, distance, has_distance, xyz, ann_off, poly_off,
                  rows=None) -> "ClipAnnotations":
        """The rows ``rows`` (default all) of flat columns whose offsets may not start at 0 (an Arrow
        slice): their points copied out, offsets rebased. ``xyz``: (n_points, 3), or the three
        columns x, y, e."""
        ann_off = np.asarray(ann_off, dtype=np.int64)
        poly_off = np.asarray(poly_off, dtype=np.int64)
        n = len(ann_off) - 1
        rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
        n_poly = ann_off[rows + 1] - ann_off[rows]
        polys = concat_ranges(ann_off[rows], n_poly)
        sizes = poly_off[polys + 1] - poly_off[polys]
        return cls(
            frame=np.asarray(frame, dtype=np.int64)[rows], cls=np.asarray(class_id, dtype=np.int64)[rows],
            index=np.asarray(index, dtype=np.int64)[rows], score=np.asarray(score, dtype=np.float64)[rows],
            distance=np.asarray(distance, dtype=np.float64)[rows],
            has_distance=np.asarray(has_distance, dtype=bool)[rows],
            xyz=_gather_points(xyz, concat_ranges(poly_off[polys], sizes)),
            ann_off=np.concatenate(([0], np.cumsum(n_poly))).astype(np.int64),
            poly_off=np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
        )

    @classmethod
    def from_file_columns(cls, cols, keep: np.ndarray) -> "ClipAnnotations":
        """The kept annotations of a parsed file (:func:`calib.io.jsonfile.parse_columns`, the keep
        mask of :func:`calib.io.validate.validate`), as :func:`calib.score.annotations.parse_annotations`
        reads them (empty polygons draw nothing; they are kept here, the maps are the same)."""
        rows = np.flatnonzero(keep)
        dist = cols.distance
        has = ~np.asarray(dist.is_null().to_numpy(zero_copy_only=False), dtype=bool) if len(dist) else \
            np.zeros(cols.n, dtype=bool)
        d = np.asarray(dist.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64) if len(dist) else \
            np.zeros(cols.n)
        return cls.from_flat(frame=cols.frame.astype(np.int64),
                             class_id=np.where(keep, cols.category, 0).astype(np.int64),
                             index=np.arange(cols.n), score=cols.score, distance=np.where(has, d, np.nan),
                             has_distance=has, xyz=cols.xyz, ann_off=cols.ann_offsets, poly_off=cols.poly_offsets,
                             rows=rows)

    def to_annotations(self) -> list[Annotation]:
        """The same annotations as objects (for the reference engine, the GT renderer, coco)."""
        xyz, po, ao = self.xyz, self.poly_off.tolist(), self.ann_off.tolist()
        frames, classes, idx = self.frame.tolist(), self.cls.tolist(), self.index.tolist()
        scores, dist, has = self.score.tolist(), self.distance.tolist(), self.has_distance.tolist()
        return [Annotation(frame=frames[k], class_id=classes[k], score=scores[k],
                           polygons=tuple(xyz[po[j]: po[j + 1]] for j in range(ao[k], ao[k + 1])),
                           distance=dist[k] if has[k] else None, index=idx[k]) for k in range(len(frames))]

    # ------------------------------------------------------------------------------------------
    def polygons(self, k: int) -> tuple[np.ndarray, ...]:
        po = self.poly_off
        return tuple(self.xyz[po[j]: po[j + 1]] for j in range(int(self.ann_off[k]), int(self.ann_off[k + 1])))

    def n_points(self) -> np.ndarray:
        """Points of each annotation (int64)."""
        return self.poly_off[self.ann_off[1:]] - self.poly_off[self.ann_off[:-1]]

    def bucket(self) -> np.ndarray:
        """frame * 64 + class per annotation: the (frame, class) bucket as one int64 (classes < 13)."""
        return self.frame * 64 + self.cls

    def render_keys(self, rows=None) -> np.ndarray:
        """(len(rows), 2) uint64: a 128-bit content key per annotation (all when ``rows`` is None)
        of its frame, class, polygon structure and points as float32 (the dcase2026 renderer reads
        nothing else: x, y and intensity go through float32 first).

        Each point contributes mix(mix(x32 << 32 | y32 ^ seed) ^ (e32 << 32 | position)), each
        polygon mix(length << 32 | position ^ seed), summed per annotation modulo 2**64, then mixed
        with the bucket; two lanes with different bijective mixers (SplitMix64's and
        MurmurHash3's finalizers) and seeds give the 128 bits."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        todo = np.unique(rows[~self._keyed[rows]])
        if todo.size:
            self._keys[todo] = self._compute_keys(todo)
            self._keyed[todo] = True
        return self._keys[rows]

    def _compute_keys(self, sel: np.ndarray) -> np.ndarray:
        n_poly = self.ann_off[sel + 1] - self.ann_off[sel]
        polys = concat_ranges(self.ann_off[sel], n_poly)
        poly_len = self.poly_off[polys + 1] - self.poly_off[polys]
        pts = concat_ranges(self.poly_off[polys], poly_len)
        n_pts = _segment_sums(poly_len, n_poly)
        pos = np.arange(pts.size, dtype=np.int64) - np.repeat(np.cumsum(n_pts) - n_pts, n_pts)
        ppos = np.arange(polys.size, dtype=np.int64) - np.repeat(np.cumsum(n_poly) - n_poly, n_poly)
        bits = self.xyz[pts].astype(np.float32).view(np.uint32).astype(np.uint64).reshape(-1, 3)
        w_xy = (bits[:, 0] << _U32) | bits[:, 1]
        w_e = (bits[:, 2] << _U32) | (pos.astype(np.uint64) & np.uint64(0xFFFFFFFF))
        w_poly = (poly_len.astype(np.uint64) << _U32) | ppos.astype(np.uint64)
        head = (self.frame[sel] * 64 + self.cls[sel]).astype(np.uint64)
        sizes = (n_pts.astype(np.uint64) << _U32) | n_poly.astype(np.uint64)
        out = np.empty((sel.size, 2), dtype=np.uint64)
        for lane, (mix, (s_pt, s_poly, s_head)) in enumerate(_LANES):
            t = mix(w_xy ^ np.uint64(s_pt))
            t ^= w_e
            points = _segment_sums(mix(t), n_pts)
            shape = _segment_sums(mix(w_poly ^ np.uint64(s_poly)), n_poly)
            k = mix(head ^ np.uint64(s_head))
            k += points
            k = mix(k)
            k += shape
            k ^= sizes
            out[:, lane] = mix(k)
        return out

    def columns(self) -> "ClipAnnotations":
        return self

    def n_points_total(self) -> int:
        return int(self.xyz.shape[0])

    def digest(self) -> str:
        """Content hash of the clip's exact arrays (what the GT cache keys a table's clip by)."""
        return _digest(self.frame, self.cls, self.index, self.distance, self.has_distance, self.ann_off,
                       self.poly_off, *(self.xyz[:, i] for i in range(3)))


def _gather_points(xyz, at: np.ndarray) -> np.ndarray:
    if isinstance(xyz, tuple):
        return np.column_stack([np.asarray(c, dtype=np.float64)[at] for c in xyz]) if at.size else np.zeros((0, 3))
    return np.asarray(xyz, dtype=np.float64)[at].reshape(-1, 3)


def _digest(*arrays) -> str:
    """SHA-1 (a cache key, not a security measure: about three times BLAKE2b's speed on CPUs with
    SHA extensions, and a truth table holds a thousand points per frame) of arrays with their
    sizes; offsets are hashed relative to their first value."""
    h = hashlib.sha1(usedforsecurity=False)
    for i, a in enumerate(arrays):
        a = np.ascontiguousarray(a)
        if i in (5, 6):
            a = a - a[0]
        h.update(np.int64(a.size).tobytes())
        h.update(a.view(np.uint8) if a.size else b"")
    return "rows-" + h.hexdigest()


# ----------------------------------------------------------------------------------------------
# tables
class TableClip:
    """One clip's rows of a table, its arrays not copied out until needed: the digest is taken
    from slices of the table's columns, so a truth table whose rendered maps are cached (a
    thousand GT points per frame) is hashed, never copied. Pickled (sent to a pool worker) as
    its own :class:`ClipAnnotations` only."""

    def __init__(self, flat: dict, start: int, stop: int, keep: bool = True):
        self._flat, self._start, self._stop, self._cols = flat, start, stop, None
        # keep the copied-out columns (predictions: their render keys are computed once); GT is
        # copied out only to render missing maps, and a truth table's copies would double its
        # memory for as long as the clips are held
        self._keep = keep

    def __len__(self) -> int:
        return self._stop - self._start

    def _poly_range(self) -> tuple[int, int]:
        ao = self._flat["ann_off"]
        return int(ao[self._start]), int(ao[self._stop])

    def n_points_total(self) -> int:
        po = self._flat["poly_off"]
        a, b = self._poly_range()
        return int(po[b] - po[a])

    def columns(self) -> ClipAnnotations:
        if self._cols is not None:
            return self._cols
        f = self._flat
        cols = ClipAnnotations.from_flat(
            frame=f["frame"], class_id=f["cls"], index=f["index"], score=f["score"], distance=f["distance"],
            has_distance=f["has_distance"], xyz=f["xyz"], ann_off=f["ann_off"], poly_off=f["poly_off"],
            rows=np.arange(self._start, self._stop))
        if self._keep:
            self._cols = cols
        return cols

    def to_annotations(self) -> list[Annotation]:
        return self.columns().to_annotations()

    def digest(self) -> str:
        """:meth:`ClipAnnotations.digest` of these rows, from the table's columns."""
        if self._flat is None:  # unpickled: only the clip's own arrays came along
            return self._cols.digest()
        f, r = self._flat, slice(self._start, self._stop)
        a, b = self._poly_range()
        p0, p1 = int(f["poly_off"][a]), int(f["poly_off"][b])
        return _digest(f["frame"][r], f["cls"][r], f["index"][r], f["distance"][r], f["has_distance"][r],
                       f["ann_off"][self._start: self._stop + 1], f["poly_off"][a: b + 1],
                       *(c[p0:p1] for c in f["xyz"]))

    def __getstate__(self):
        return {"_cols": self.columns(), "_flat": None, "_start": 0, "_stop": len(self), "_keep": True}


def clips_from_table(df, kind: str = "pred") -> dict[str, TableClip]:
    """{clip: TableClip} of a detections (kind="pred") or truth (kind="gt") table, classes 0..12,
    clips in sorted order, each clip's rows by det_id / ann_id; scores and points checked as the
    JSON files' rules check them (an error names the clip, the row's id and the point). Nothing is
    copied per clip until asked for, nor the table when its rows come in runs of one clip with
    ascending ids (as ingest writes them, and :func:`calib.tables.restrict_clips` keeps them) and
    each run lies in one chunk of its points column: a dev set's truth table (gigabytes of points)
    is read in place."""
    import polars as pl

    if df.height == 0:
        return {}
    id_col = "det_id" if kind == "pred" else "ann_id"
    cls_ok = (pl.col("class_id") >= 0) & (pl.col("class_id") < N_CLASSES)
    if not df.select(cls_ok.all()).item():
        df = df.filter(cls_ok)
    if df.height == 0:
        return {}
    runs = _clip_runs(df, id_col)
    if runs is None:  # rows out of order: sorted, which copies the table
        order = df.select(pl.arg_sort_by(["clip", id_col], maintain_order=True)).to_series().to_numpy()
        df = df[order]
        runs = _clip_runs(df, id_col)
    clip_names, starts, stops = runs
    chunks = df.get_column("points").get_chunks()
    bounds = np.cumsum([0] + [c.len() for c in chunks])
    at = np.searchsorted(bounds, starts, side="right") - 1  # the chunk holding each run's first row
    if (stops > bounds[at + 1]).any():  # a run across chunks: one chunk (copied)
        chunks, bounds, at = [df.get_column("points").rechunk()], np.array([0, df.height]), np.zeros(len(starts), int)
    clip_col = df.get_column("clip")
    ids = df.get_column(id_col).to_numpy()
    scores = df.get_column("score").to_numpy().astype(np.float64) if kind == "pred" else np.full(df.height, np.nan)
    dist = df.get_column("distance")
    rows = {"frame": df.get_column("frame").to_numpy().astype(np.int64),
            "cls": df.get_column("class_id").to_numpy().astype(np.int64), "index": ids.astype(np.int64),
            "score": scores, "distance": dist.cast(pl.Float64).fill_null(np.nan).to_numpy(),
            "has_distance": dist.is_not_null().to_numpy()}
    flats = []
    for k, chunk in enumerate(chunks):
        a, b = int(bounds[k]), int(bounds[k + 1])
        pts = chunk.to_arrow()  # one chunk: no copy
        pts = pts.combine_chunks() if hasattr(pts, "combine_chunks") else pts
        ann_off = pts.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        polys = pts.values
        poly_off = polys.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        leaf = polys.values
        # the three columns as Arrow holds them (no (n, 3) copy of a truth table's points)
        xyz = tuple(np.asarray(leaf.field(c).to_numpy(zero_copy_only=False), dtype=np.float64)
                    for c in ("x", "y", "e")) if len(leaf) else (np.zeros(0),) * 3
        check_table(xyz, ann_off, poly_off, scores[a:b] if kind == "pred" else None, clip_col[a:b], ids[a:b], id_col)
        flats.append({**{key: v[a:b] for key, v in rows.items()}, "xyz": xyz, "ann_off": ann_off, "poly_off": poly_off})
    out = {}
    for i in np.argsort(np.array(clip_names, dtype=object), kind="stable"):
        k, base = int(at[i]), int(bounds[at[i]])
        out[clip_names[i]] = TableClip(flats[k], int(starts[i]) - base, int(stops[i]) - base, keep=kind == "pred")
    return out


def _clip_runs(df, id_col: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """(clip, first row, end row) of each clip's run of rows (:func:`calib.tables.clip_runs`), or
    None unless every clip's rows are one run with strictly ascending ids."""
    from calib.tables import clip_runs

    names, starts, stops = clip_runs(df)
    if len(set(names)) != len(names):
        return None
    starts, stops = np.asarray(starts, dtype=np.int64), np.asarray(stops, dtype=np.int64)
    ids = df.get_column(id_col).to_numpy()
    inside = np.ones(df.height, dtype=bool)
    inside[starts] = False  # a row after the first of its run
    if ((np.diff(ids) <= 0) & inside[1:]).any():
        return None
    return names, starts, stops


_CHECK_BLOCK = 1 << 20


def check_table(xyz, ann_off, poly_off, scores, clips, ids, id_col) -> None:
    """The JSON files' rules (:mod:`calib.io.validate`) on table rows: finite scores, points on the
    canvas; the error names the clip, the row's id and the point. ``xyz``: the columns x, y, e."""
    from calib.io.errors import InputError
    from calib.io.validate import points_outside_canvas, scores_not_finite

    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64)
        bad = np.flatnonzero(scores_not_finite(sc))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"clip {clips[i]}", f"{id_col} {ids[i]}: score must be a finite number, got {sc[i]!r}")
    if not len(ann_off):
        return
    lo, hi = int(poly_off[ann_off[0]]), int(poly_off[ann_off[-1]])  # points the rows refer to
    bad = np.zeros(0, dtype=np.int64)
    for a in range(lo, hi, _CHECK_BLOCK):  # a block at a time: the (n, 3) copy stays small
        b = min(hi, a + _CHECK_BLOCK)
        bad = a + np.flatnonzero(points_outside_canvas(np.column_stack([c[a:b] for c in xyz])))
        if bad.size:
            break
    if bad.size:
        p = int(bad[0])
        x, y, e = (float(c[p]) for c in xyz)
        poly = int(np.searchsorted(poly_off, p, side="right") - 1)
        row = int(np.searchsorted(ann_off, poly, side="right") - 1)
        raise InputError(f"clip {clips[row]}", f"{id_col} {ids[row]}: polygon {poly - ann_off[row]}: triplet "
                         f"{p - poly_off[poly]} = ({x}, {y}, {e}) has x outside [0, 360], y outside [0, 180] "
                         "or a non-finite intensity")


def load_file_columns(path, kind: str = "pred", protocol: str = "dcase2026") -> tuple[ClipAnnotations, str]:
    """One clip file -> (its kept annotations column-wise, the content digest of its bytes, as the
    GT cache's file digests are): what :func:`calib.score.annotations.load_file` reads, with the
    same rules and errors, without an object per annotation."""
    from calib.io.jsonfile import parse_columns
    from calib.io.validate import validate
    from calib.score.annotations import file_digest, read_bytes

    data = read_bytes(path, kind, protocol)
    cols = parse_columns(str(path), data)
    keep = validate(str(path), cols, kind, unknown_classes="skip")
    return ClipAnnotations.from_file_columns(cols, keep), "file-" + file_digest(data)
