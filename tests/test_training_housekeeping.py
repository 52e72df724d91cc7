"""The training run's leftovers: cached chunks past their expiry are removed."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from licanom.ops.training import CHUNK_CACHE_PREFIX, prune_chunk_cache


def test_cached_chunks_older_than_the_expiry_are_removed_and_nothing_else(tmp_path):
    now = time.time()
    old = tmp_path / f"{CHUNK_CACHE_PREFIX}aaaa"
    fresh = tmp_path / f"{CHUNK_CACHE_PREFIX}bbbb"
    other = tmp_path / "3f2b9c0e-a-flow-result"
    for path in (old, fresh, other):
        path.write_bytes(b"x")
    os.utime(old, (now - 2 * 86400, now - 2 * 86400))
    os.utime(other, (now - 30 * 86400, now - 30 * 86400))
    assert prune_chunk_cache(tmp_path, timedelta(days=1), now=now) == [old]
    assert not old.exists() and fresh.exists() and other.exists()
    assert prune_chunk_cache(tmp_path / "absent", timedelta(days=1)) == []
