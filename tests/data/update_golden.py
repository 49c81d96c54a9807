"""Rebuild tests/data/golden.tar.xz from the shared golden vectors (the source of truth).

    python tests/data/update_golden.py                      # from ../shared/golden
    python tests/data/update_golden.py --source DIR --out tests/data/golden.tar.xz

The archive is deterministic: the same files give the same bytes (members sorted by path under a
top folder ``golden/``, mtime 0, owner root, modes 0644/0755, USTAR headers, xz preset 9 with a
CRC64 check), so a rebuild from unchanged files leaves git with nothing to commit. The tests unpack
it once per session (tests/conftest.py) and check it against ../shared/golden where that exists.
"""
from __future__ import annotations

import argparse
import io
import lzma
import os
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "golden"  # the worktree's sibling ../shared/golden
DEFAULT_ARCHIVE = HERE / "golden.tar.xz"
TOP = "golden"


def source_files(src: Path) -> dict[str, bytes]:
    """{path relative to src (POSIX): bytes} of every regular file under src (hidden ones too)."""
    out = {}
    for p in sorted(src.rglob("*")):
        if p.is_symlink():
            raise ValueError(f"{p}: symbolic links are not archived")
        if p.is_file():
            out[p.relative_to(src).as_posix()] = p.read_bytes()
    return out


def _member(name: str, size: int, is_dir: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.mode = 0o755 if is_dir else 0o644
    info.size = 0 if is_dir else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def archive_bytes(files: dict[str, bytes]) -> bytes:
    """The deterministic .tar.xz of {relative path: bytes}, members under ``golden/``."""
    dirs = sorted({"/".join(rel.split("/")[:i]) for rel in files for i in range(1, rel.count("/") + 1)})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_member(TOP, 0, True))
        for d in dirs:
            tar.addfile(_member(f"{TOP}/{d}", 0, True))
        for rel in sorted(files):
            tar.addfile(_member(f"{TOP}/{rel}", len(files[rel]), False), io.BytesIO(files[rel]))
    return lzma.compress(raw.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=9)


def archive_files(archive: Path) -> dict[str, bytes]:
    """{path relative to golden/: bytes} of the regular files in an archive made here."""
    out = {}
    with tarfile.open(archive, mode="r:xz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                if not m.name.startswith(TOP + "/"):
                    raise ValueError(f"{archive}: member {m.name!r} outside {TOP}/")
                out[m.name[len(TOP) + 1:]] = tar.extractfile(m).read()
    return out


def unpack(archive: Path, dest: Path) -> Path:
    """Unpack the archive under dest (only plain files and folders, inside dest); returns dest/golden."""
    with tarfile.open(archive, mode="r:xz") as tar:
        tar.extractall(dest, filter="data")
    return dest / TOP


def write_atomically(data: bytes, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help=f"golden folder (default {DEFAULT_SOURCE})")
    ap.add_argument("--out", type=Path, default=DEFAULT_ARCHIVE, help=f"archive to write (default {DEFAULT_ARCHIVE})")
    args = ap.parse_args(argv)
    if not args.source.is_dir():
        print(f"update_golden: {args.source} is not a folder", file=sys.stderr)
        return 2
    files = source_files(args.source)
    data = archive_bytes(files)
    same = args.out.exists() and args.out.read_bytes() == data
    if not same:
        write_atomically(data, args.out)
    print(f"{args.out}: {len(files)} files, {sum(map(len, files.values())):,} bytes -> {len(data):,} bytes"
          + (" (unchanged)" if same else " (written)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
