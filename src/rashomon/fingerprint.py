"""Content fingerprints of input files, with a size + mtime fast path for large files.

A run records the fingerprint of the data files its stages read, so a later command whose
files changed (edited in place, or another folder under the same name) redoes those stages
instead of reusing results computed from other data.

- Files of at most `SMALL_FILE` bytes (every label CSV, classes file and attribute CSV, and
  small images) are hashed on every call: the ones users edit in place are all small, and an
  edit that keeps the size and restores the mtime (`cp -p`, `rsync -t`, a checkout) must count.
- Larger files (npz archives, large images) keep their sha256 in a cache with their size and
  mtime and are not read again while both are unchanged. A same-size edit with a restored mtime
  is therefore missed for them; `verify=True` re-hashes every file (and refreshes the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

CHUNK = 1 << 20
SMALL_FILE = 1 << 20  # bytes: hashed on every call, never taken from the cache


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file's content, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def file_digests(
    paths: Iterable[str | Path],
    cache_file: Path | None = None,
    verify: bool = False,
    small_file: int = SMALL_FILE,
) -> dict[str, str | None]:
    """The sha256 of each file's content, by resolved path (None: the file is absent).
    `cache_file` keeps {path: [size, mtime_ns, sha256]} between calls for files over
    `small_file` bytes, which are not read again while their size and mtime are unchanged;
    `verify` re-hashes those too (see the module docstring). The files a stage wrote are
    checked with `small_file=0`: every one may come from the cache."""
    cache: dict[str, list] = {}
    if cache_file is not None and cache_file.exists():
        try:
            cache = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            cache = {}
    out: dict[str, str | None] = {}
    changed = False
    for p in sorted({str(Path(p).resolve()) for p in paths}):
        try:
            st = os.stat(p)
        except OSError:
            out[p] = None
            continue
        hit = cache.get(p)
        fast = not verify and st.st_size > small_file
        if fast and hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            digest = hit[2]
        else:
            digest = file_sha256(Path(p))
            if st.st_size > small_file and hit != [st.st_size, st.st_mtime_ns, digest]:
                cache[p] = [st.st_size, st.st_mtime_ns, digest]
                changed = True
        out[p] = digest
    if cache_file is not None and changed:
        tmp = cache_file.with_name(f".{cache_file.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text(json.dumps(cache))
            tmp.replace(cache_file)
        except OSError:
            pass  # the cache only saves time
    return out


def digests_fingerprint(digests: Mapping[str, str | None]) -> str:
    """One hex digest over {path: sha256 or None (absent)}, order-independent."""
    # File names, not folders, enter the digest: the same files under another root are the same
    # data, while two images that swap content are not.
    entries = [f"{Path(p).name}:{d if d is not None else 'absent'}" for p, d in digests.items()]
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:16]


def files_fingerprint(
    paths: Iterable[str | Path], cache_file: Path | None = None, verify: bool = False
) -> str:
    """One hex digest over the content of `paths` (order-independent; a missing file counts as
    'absent'). `cache_file` keeps {path: [size, mtime_ns, sha256]} between calls for files over
    `SMALL_FILE` bytes; `verify` re-hashes those too (see the module docstring)."""
    return digests_fingerprint(file_digests(paths, cache_file, verify))
