"""Walks the inputs of a bulk run: folders, .zip and .tar/.tar.gz archives, as streams.

Nothing is ever extracted to disk, so no member path can escape the output folder (zip-slip
is impossible by construction), and memory holds one member at a time. Items come out in a
deterministic order (inputs as given; folders sorted; archives in stored order), which is
what makes ``--resume`` reproduce the same shards.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_MEMBER_BYTES = 512 << 20
"""A single compressed image above this is refused rather than read into memory."""


@dataclass
class Item:
    """One file found in the inputs. ``read`` returns its bytes (call it at most once)."""

    source: str
    case_id: str
    is_image: bool
    read: Callable[[], bytes]


def _too_big(size: int, label: str) -> Callable[[], bytes]:
    return _fail(f"{label}: {size} bytes is over the {MAX_MEMBER_BYTES} byte limit")


def _case_id(name: str) -> str:
    return PurePosixPath(name).stem


def _is_image(name: str) -> bool:
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _folder(root: Path) -> Iterator[Item]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            yield Item(str(path), _case_id(name), _is_image(name), path.read_bytes)


def _zip(path: Path) -> Iterator[Item]:
    # Left open (not a `with`): items are read in batches, possibly after this generator has
    # moved past them or finished; the file closes when the last reader is dropped.
    zf = zipfile.ZipFile(path)
    for info in zf.infolist():
        if info.is_dir() or PurePosixPath(info.filename).name.startswith("."):
            continue
        label = f"{path}!{info.filename}"
        if info.file_size > MAX_MEMBER_BYTES:
            reader = _too_big(info.file_size, label)
        else:
            reader = _reader_zip(zf, info)
        yield Item(label, _case_id(info.filename), _is_image(info.filename), reader)


def _reader_zip(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    return lambda: zf.read(info)


def _tar(path: Path) -> Iterator[Item]:
    # "r|*": a forward-only stream, transparently gunzipped; never random access.
    with tarfile.open(path, mode="r|*") as tf:
        for member in tf:
            name = member.name
            if not member.isfile() or PurePosixPath(name).name.startswith("."):
                continue
            label = f"{path}!{name}"
            if member.size > MAX_MEMBER_BYTES:
                reader = _too_big(member.size, label)
            else:
                reader = _reader_tar(tf, member, label)
            yield Item(label, _case_id(name), _is_image(name), reader)


def _reader_tar(tf: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> Callable[[], bytes]:
    # A stream cannot go back, so the member is read now, while the stream is on it.
    f = tf.extractfile(member)
    if f is None:
        return _fail(f"{label}: cannot read this archive member")
    try:
        data = f.read()
    except (OSError, tarfile.TarError) as e:
        return _fail(f"{label}: {e}")
    return lambda: data


def _fail(message: str) -> Callable[[], bytes]:
    def fail() -> bytes:
        raise OSError(message)

    return fail


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def iter_items(inputs: list[str | os.PathLike[str]]) -> Iterator[Item]:
    """Yields every file of every input, in order. Missing inputs raise ``FileNotFoundError``."""
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            yield from _folder(path)
        elif path.is_file() and path.name.lower().endswith(".zip"):
            yield from _zip(path)
        elif path.is_file() and is_archive(path):
            yield from _tar(path)
        elif path.is_file():
            yield Item(str(path), _case_id(path.name), _is_image(path.name), path.read_bytes)
        else:
            raise FileNotFoundError(f"input not found: {path}")


def count_items(inputs: list[str | os.PathLike[str]]) -> int | None:
    """The number of items, when it is cheap to know (folders, zips); None for tar streams."""
    total = 0
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            total += sum(1 for _, _, files in os.walk(path) for f in files if not f.startswith("."))
        elif path.is_file() and path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                total += sum(
                    1
                    for i in zf.infolist()
                    if not i.is_dir() and not PurePosixPath(i.filename).name.startswith(".")
                )
        elif path.is_file() and is_archive(path):
            return None
        else:
            total += 1
    return total
