"""The GT cache's file digests: remembered for unchanged files, never for freshly written ones."""
import os
import time

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
