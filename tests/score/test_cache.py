"""The GT cache's file digests: remembered for unchanged files, never for freshly written ones;
its memory shared by threads."""
import os
import time

import numpy as np

from calib.score.annotations import file_digest
from calib.score.cache import MapCache


def test_file_digest_is_remembered_for_old_files_and_forgotten_on_clear(tmp_path):
    f = tmp_path / "a_std.json"
    f.write_bytes(b"0123456789")
    old = time.time_ns() - 10_000_000_000
    os.utime(f, ns=(old, old))
    cache, reads = MapCache(), []

    def read():
        reads.append(1)
        return f.read_bytes()

    assert cache.file_digest(f, read) == file_digest(b"0123456789")
    assert cache.file_digest(f, read) == file_digest(b"0123456789")
    assert len(reads) == 1  # second time from memory
    f.write_bytes(b"0123456780")  # same size, new mtime: hashed again
    assert cache.file_digest(f, read) == file_digest(b"0123456780")
    cache.clear()
    cache.file_digest(f, read)
    assert len(reads) == 3


def test_a_file_written_just_now_is_hashed_every_time(tmp_path):
    """A rewrite within the timestamp granularity can keep size and mtime, so a digest is only
    remembered for files last modified well before they were hashed."""
    f = tmp_path / "b_std.json"
    cache = MapCache()
    f.write_bytes(b"first")
    assert cache.file_digest(f, f.read_bytes) == file_digest(b"first")
    st = os.stat(f)
    f.write_bytes(b"other")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert cache.file_digest(f, f.read_bytes) == file_digest(b"other")


def test_digests_kept_in_the_cache_folder_serve_a_new_process(tmp_path):
    """With a cache folder, an unchanged old file is not read again by a fresh cache (a new
    `calib score --cache` process); a changed one is, and a broken index is only a miss."""
    from calib.score.cache import DIGEST_INDEX

    f, cache_dir = tmp_path / "c_std.json", tmp_path / "cache"
    f.write_bytes(b"abc")
    old = time.time_ns() - 10_000_000_000
    os.utime(f, ns=(old, old))
    reads = []

    def read():
        reads.append(1)
        return f.read_bytes()

    def digest_in_new_process():
        cache = MapCache()
        digest = cache.file_digest(f, read, cache_dir)
        cache.save_digests(cache_dir)
        return digest

    assert digest_in_new_process() == file_digest(b"abc")
    assert (cache_dir / DIGEST_INDEX).exists()
    assert digest_in_new_process() == file_digest(b"abc")
    assert len(reads) == 1  # the second cache found it in the folder's index
    f.write_bytes(b"abd")
    os.utime(f, ns=(old + 1, old + 1))  # same size, another mtime
    assert digest_in_new_process() == file_digest(b"abd")
    assert len(reads) == 2
    (cache_dir / DIGEST_INDEX).write_text("{not json")
    assert digest_in_new_process() == file_digest(b"abd")
    assert len(reads) == 3
    assert digest_in_new_process() == file_digest(b"abd")  # index rewritten
    assert len(reads) == 3


def test_a_file_written_just_now_stays_out_of_the_folder_index(tmp_path):
    f, cache_dir = tmp_path / "d_std.json", tmp_path / "cache"
    f.write_bytes(b"fresh")
    cache = MapCache()
    cache.file_digest(f, f.read_bytes, cache_dir)
    cache.save_digests(cache_dir)
    st = os.stat(f)
    f.write_bytes(b"frash")  # same size, same mtime below: only hashing tells it apart
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert MapCache().file_digest(f, f.read_bytes, cache_dir) == file_digest(b"frash")


def test_in_place_edit_with_size_and_mtime_put_back_gets_fresh_metrics(tmp_path):
    """An edit that keeps the size and puts the mtime back (touch -r, os.utime) still changes the
    ctime, which the digest index records (as git's index does): the next process re-hashes the
    file and scores the new ground truth instead of serving the old maps."""
    import json

    from calib.score import score
    from calib.score.cache import DIGEST_INDEX, GT_CACHE

    blob = [[[40.0 + dx, 80.0 + dy, 1.0] for dx in range(6) for dy in range(6)]]
    pred_dir, gt_dir, cache_dir = tmp_path / "pred", tmp_path / "gt", tmp_path / "cache"
    pred_dir.mkdir()
    gt_dir.mkdir()
    (pred_dir / "c1.json").write_text(json.dumps({"annotations": [
        {"metadata_frame_index": 0, "category_id": 3, "score": 0.9, "segmentation": blob}]}))
    gt = gt_dir / "c1_std.json"
    gt.write_text(json.dumps({"annotations": [{"metadata_frame_index": 0, "category_id": 3, "segmentation": blob}]}))
    old = time.time_ns() - 10_000_000_000  # past the racy window: the digest is remembered
    os.utime(gt, ns=(old, old))

    GT_CACHE.clear()
    before = score(pred_dir, gt_dir, cache_dir=cache_dir)["macro_mAP"]
    assert before == 1.0  # the prediction is the ground truth
    assert os.path.abspath(gt) in json.loads((cache_dir / DIGEST_INDEX).read_text())["files"]

    st = os.stat(gt)
    gt.write_text(gt.read_text().replace('"category_id": 3', '"category_id": 4'))  # same size
    os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(gt).st_size, os.stat(gt).st_mtime_ns) == (st.st_size, st.st_mtime_ns)

    GT_CACHE.clear()  # a new process: only the folder's index remembers the old digest
    after = score(pred_dir, gt_dir, cache_dir=cache_dir)["macro_mAP"]
    GT_CACHE.clear()
    fresh = score(pred_dir, gt_dir)["macro_mAP"]  # no cache at all
    assert after == fresh == 0.0  # class 4 is missed, the class-3 prediction matches nothing


def test_an_index_of_the_old_format_is_ignored(tmp_path):
    """Version-1 indexes ([size, mtime, ino, dev, digest], no ctime) are not trusted: re-hashed."""
    import json

    from calib.score.cache import DIGEST_INDEX

    f, cache_dir = tmp_path / "e_std.json", tmp_path / "cache"
    f.write_bytes(b"new!")
    old = time.time_ns() - 10_000_000_000
    os.utime(f, ns=(old, old))
    st = os.stat(f)
    cache_dir.mkdir()
    (cache_dir / DIGEST_INDEX).write_text(json.dumps(
        {os.path.abspath(f): [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, "stale-digest"]}))
    assert MapCache().file_digest(f, f.read_bytes, cache_dir) == file_digest(b"new!")


class _Blob:
    """A cache value of ``n`` bytes."""

    def __init__(self, n):
        self.a = np.zeros(n, np.uint8)

    def nbytes(self):
        return self.a.nbytes

    def to_arrays(self):
        return {"a": self.a}

    @classmethod
    def from_arrays(cls, z):
        b = cls(0)
        b.a = np.asarray(z["a"])
        return b


def test_threads_sharing_the_cache_keep_its_accounting_right():
    """Chains on threads (calib.score.parallel.thread_map) get and put at once, evicting each
    other's entries: no entry vanishes between a check and its use, and the byte count stays the
    sum of what is held (the lookups here pause, so another thread gets in between)."""
    from collections import OrderedDict

    from tests.threads import errors_on_threads

    class Pausing(OrderedDict):
        def __contains__(self, key):
            found = super().__contains__(key)
            time.sleep(1e-4)  # lets another thread run between a check and what follows it
            return found

    cache = MapCache(budget=3 * 64)
    cache._mem = Pausing()

    def hammer(t):
        for i in range(150):
            key = f"k{(i * 7 + t) % 5}"
            if cache.get(key, None, _Blob) is None:
                cache.put(key, _Blob(64), None)

    assert errors_on_threads(hammer) == []
    assert cache._bytes == sum(size for _, size in cache._mem.values()) <= 3 * 64


def test_clip_digests_taken_on_threads_are_the_ones_taken_in_turn():
    from calib.score import api
    from calib.score.annotations import Annotation

    rng = np.random.default_rng(3)

    def clip(k):
        return [Annotation(frame=f, class_id=int(rng.integers(13)), score=1.0, polygons=(rng.random((5, 3)) * [360, 180, 1],),
                           index=f) for f in range(k + 1)]

    anns = [clip(k) for k in range(4 * api.DIGEST_CLIPS_PER_THREAD)]
    anns.append(anns[0])  # the same content: the same digest
    in_turn = api._digests([api._Source(anns=a, kind="gt") for a in anns], None, {"jobs": 1, "backend": "loky"})
    threaded = api._digests([api._Source(anns=a, kind="gt") for a in anns], None, {"jobs": 2, "backend": "loky"})
    assert threaded == in_turn
    assert len(set(in_turn)) == len(anns) - 1 and in_turn[-1] == in_turn[0]
