"""Where a split's shards are: the file-name rule, discovery and record counts.

Shards are what :class:`boneage._native.ShardWriter` writes, ``{split}-{i:05d}-of-{n:05d}
.tfrecord`` (``.tfrecord.gz`` with GZIP); the reader side checks that a folder holds one
complete, consistent set, so a stale or missing shard is an error rather than wrong data.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

from boneage import _native

__all__ = ["ShardSource", "count_examples", "find_shards", "is_gzip_file"]

ShardSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""A shard directory, a glob pattern, a single file or a list of files."""

is_gzip_file = _native.is_gzip_file
"""Whether a TFRecord file is GZIP-compressed, judged by content (the native reader's rule)."""


def find_shards(pattern_or_dir: ShardSource, split: str) -> list[str]:
    """The shard files of ``split``, sorted.

    - A directory: the files named ``{split}-NNNNN-of-MMMMM.tfrecord[.gz]`` in it. The set must
      be complete and consistent: all ``MMMMM`` equal, every index present once. Leftovers of a
      run with another shard count, or a missing shard, are errors rather than silently wrong
      data. Hidden temporaries of an unfinished writer never match.
    - A glob pattern (or a single file): the matching files, as they are; ``split`` is then only
      a label.
    - A list of paths: taken as they are.
    """
    if isinstance(pattern_or_dir, (list, tuple)):
        files = [os.fspath(p) for p in pattern_or_dir]
        if not files:
            raise ValueError("no shard files given (empty list)")
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"shard file not found: {f}")
        return files
    path = os.fspath(pattern_or_dir)  # type: ignore[arg-type]
    if os.path.isdir(path):
        found: dict[int, dict[int, list[str]]] = {}
        for name in os.listdir(path):
            parsed = _native.parse_shard_name(name)  # the writer's own naming rule
            if parsed is not None and parsed[0] == split:
                _, index, total, _gzip = parsed
                found.setdefault(total, {}).setdefault(index, []).append(name)
        if not found:
            raise FileNotFoundError(
                f"no shards of split {split!r} in {path} "
                f"(expected files named {split}-NNNNN-of-MMMMM.tfrecord[.gz])"
            )
        if len(found) > 1:
            counts = ", ".join(f"{len(v)} of {k}" for k, v in sorted(found.items()))
            raise ValueError(
                f"{path} holds shards of split {split!r} from runs with different shard counts "
                f"({counts}); remove the stale ones"
            )
        ((total, by_index),) = found.items()
        missing = sorted(set(range(total)) - set(by_index))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ValueError(
                f"{path}: split {split!r} is incomplete: {len(by_index)} of {total} shards "
                f"present, missing index {shown}"
            )
        doubles = [names for names in by_index.values() if len(names) > 1]
        if doubles:
            raise ValueError(f"{path}: shards present both plain and compressed: {doubles[0]}")
        return [os.path.join(path, by_index[i][0]) for i in range(total)]
    if os.path.isfile(path):
        return [path]
    files = sorted(glob.glob(path))
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"no files match {path!r}")
    return files


def count_examples(pattern_or_dir: ShardSource, split: str) -> int:
    """Number of records in the shards of ``split`` (e.g. for ``steps_per_epoch``)."""
    return _native.count_records(find_shards(pattern_or_dir, split))
