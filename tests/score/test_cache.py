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
