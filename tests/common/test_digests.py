"""common.digests.file_sha256: the digest of a file's bytes, None for anything that cannot be read."""

from __future__ import annotations

import hashlib

from common.digests import file_sha256


def test_file_sha256_matches_hashlib_and_is_none_when_unreadable(tmp_path):
    data = bytes(range(256)) * 9000  # more than one read block
    (tmp_path / "f.bin").write_bytes(data)
    assert file_sha256(tmp_path / "f.bin") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "f.bin")) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()
    assert file_sha256(tmp_path / "absent") is None
    assert file_sha256(tmp_path) is None  # a folder
