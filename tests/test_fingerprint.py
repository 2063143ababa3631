"""Content fingerprints of input files: small files always hashed, large ones by size + mtime
unless verified."""

from __future__ import annotations

import hashlib
import os

from rashomon.fingerprint import SMALL_FILE, file_sha256, files_fingerprint


def _same_size_edit_keeping_mtime(path, old: bytes, new: bytes) -> None:
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(old, new))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_a_same_size_edit_with_the_old_mtime_is_seen_in_a_small_file(tmp_path):
    # main: a label flipped in place (same size) with the mtime restored (rsync -t, cp -p, a
    # checkout) kept the cached digest: every stage stayed "up to date" on other labels
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,split\na.png,0,train\nb.png,1,test\n")
    cache = tmp_path / "hashes.json"
    before = files_fingerprint([labels], cache)
    assert files_fingerprint([labels], cache) == before
    _same_size_edit_keeping_mtime(labels, b"a.png,0", b"a.png,1")
    after = files_fingerprint([labels], cache)
    assert after != before
    assert after == files_fingerprint([labels])  # the same digest as without a cache


def test_large_files_use_the_fast_path_unless_verified(tmp_path):
    big = tmp_path / "images.npz"
    big.write_bytes(b"\0" * (SMALL_FILE + 1))
    cache = tmp_path / "hashes.json"
    before = files_fingerprint([big], cache)
    _same_size_edit_keeping_mtime(big, b"\0\0\0\0", b"\1\0\0\0")
    # documented limit (docs/run-directory.md): size and mtime unchanged, content not re-read
    assert files_fingerprint([big], cache) == before
    verified = files_fingerprint([big], cache, verify=True)
    assert verified != before and verified == files_fingerprint([big])
    # verifying refreshed the cache: the fast path now returns the new content's digest
    assert files_fingerprint([big], cache) == verified
    assert file_sha256(big) == hashlib.sha256(big.read_bytes()).hexdigest()
