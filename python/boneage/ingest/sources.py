"""Walks the inputs of a bulk run: folders, .zip and .tar/.tar.gz archives, as streams.

Nothing is ever extracted to disk, so no member path can escape the output folder (zip-slip
is impossible by construction), and memory holds one member at a time. Items come out in a
deterministic order (inputs as given; folders sorted; archives in stored order), which is
what makes ``--resume`` reproduce the same shards.

Inputs are hostile until proven otherwise. Every entry that cannot be an image input still
comes out, as an :class:`Item` whose ``skip`` says why (a link, a FIFO, a device, a hidden
file, a damaged member, the unreadable rest of a cut archive), so the bulk job can give it a
manifest row instead of losing it. Entries are classified by type before anything is opened
(opening a FIFO blocks forever), links inside archives are never followed, and every read is
bounded by :data:`MAX_MEMBER_BYTES`, checked before reading and again while reading (a header
may lie about a size; ``/dev/zero`` has none).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}
"""Names taken as images. DICOM also comes without an extension (``IM000001``) or named by
its UID (``1.2.840...``): such items are read and recognised by content (``ingest.dicom``)."""
MAX_MEMBER_BYTES = 512 << 20
"""A single compressed image above this is refused rather than read into memory."""

ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,  # bad CRC, bad local header, truncated central directory
    zlib.error,  # damaged deflate data
    lzma.LZMAError,  # damaged xz / lzma data
    EOFError,  # a compressed stream cut short (gzip, bz2, lzma)
    tarfile.TarError,  # ReadError, CompressionError, HeaderError, ...
    OSError,  # I/O errors; bz2 reports damaged data as OSError
    RuntimeError,  # an encrypted zip member
    NotImplementedError,  # a zip compression method Python does not have
    ValueError,  # negative seeks, undecodable names, closed files on damaged input
    struct.error,  # headers shorter than their format
    KeyError,  # a member the central directory lists but cannot find again
)
"""What the zipfile/tarfile/gzip/zlib/bz2/lzma modules can raise for damaged input: caught
for the one member (or archive) concerned, never for the run."""


@dataclass
class Item:
    """One entry found in the inputs. ``read`` returns its bytes (call it at most once).

    ``skip`` is non-empty when the entry cannot be an input (a link, a FIFO, a hidden file, a
    damaged member, the unreadable rest of a cut archive): the reason for its manifest row.
    ``read`` then raises ``OSError`` with that reason, so callers that only read still fail
    safely. Archive-level entries (the rest of a cut archive) have ``case_id == ""``.
    """

    source: str
    case_id: str
    is_image: bool
    read: Callable[[], bytes]
    skip: str = ""


def _fail(message: str) -> Callable[[], bytes]:
    def fail() -> bytes:
        raise OSError(message)

    return fail


def _posix(name: str) -> str:
    """Archives are made on every OS: ``sub\\1234.png`` from Windows means ``sub/1234.png``."""
    return name.replace("\\", "/")


def _basename(name: str) -> str:
    return PurePosixPath(_posix(name)).name


def case_id(name: str) -> str:
    """A file's case id: its name without the extension. A name whose last dot part is a
    number (a DICOM UID such as ``1.2.840.113619.5``) is kept whole: that is no extension."""
    path = PurePosixPath(_posix(name))
    return path.name if path.suffix[1:].isdigit() else path.stem


def _is_image(name: str) -> bool:
    return PurePosixPath(_posix(name)).suffix.lower() in IMAGE_SUFFIXES


def _is_hidden(name: str) -> bool:
    return _basename(name).startswith(".")


def _entry(label: str, name: str, reader: Callable[[], bytes]) -> Item:
    return Item(label, case_id(name), _is_image(name), reader)


def _skipped(label: str, name: str, reason: str) -> Item:
    return Item(label, case_id(name), _is_image(name), _fail(f"{label}: {reason}"), reason)


def _broken(label: str, reason: str) -> Item:
    """An archive-level row: the archive, or its unreadable rest, is not any one case."""
    return Item(label, "", False, _fail(f"{label}: {reason}"), reason)


HIDDEN = "hidden file (name starts with a dot)"


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


_KINDS = (
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISDIR, "folder"),
)


def _kind(mode: int) -> str:
    """What a non-regular file is, in words, for its manifest row."""
    return next((name for test, name in _KINDS if test(mode)), "special file")


def _limit() -> int:
    # Looked up at call time, so tests (and callers) can lower the module's limit.
    return MAX_MEMBER_BYTES


def _too_big(size: int) -> str:
    """The reason for a file or member over the size limit ('' when within it)."""
    return f"{size} bytes is over the {_limit()} byte limit" if size > _limit() else ""


def _member_skip(name: str, kind: str | None, size: int) -> str:
    """Why an archive member is not an input ('' when it is one): not a regular file (``kind``
    names what it is), a hidden name, or over the size limit. Zip and tar members go through
    these same checks in this order, so one member gives one row whichever archive holds it.
    """
    if kind is not None:
        return f"not a regular file ({kind}; not followed)"
    return HIDDEN if _is_hidden(name) else _too_big(size)


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """The bytes of a regular file, at most ``limit`` (default :data:`MAX_MEMBER_BYTES`).

    Opened without blocking (a FIFO swapped in after the caller's check cannot hang the run),
    then checked by type and size on the open descriptor, then read to at most limit + 1
    bytes, so a file that grows, or a size that lies, cannot exhaust memory. Raises
    ``OSError`` with a reason naming the file.
    """
    limit = _limit() if limit is None else limit
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: not a regular file ({_kind(st.st_mode)})")
        if st.st_size > limit:
            raise OSError(f"{path}: {st.st_size} bytes is over the {limit} byte limit")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path}: more than {limit} bytes (over the limit)")
    return data


def _file_item(path: Path, name: str, st: os.stat_result, via_link: bool) -> Item:
    """An item for a folder entry whose (followed) stat is ``st``; never opens non-files."""
    label = str(path)
    if stat.S_ISDIR(st.st_mode):
        return _skipped(label, name, "symbolic link to a folder (not followed)")
    if not stat.S_ISREG(st.st_mode):
        what = f"symbolic link to a {_kind(st.st_mode)}" if via_link else _kind(st.st_mode)
        return _skipped(label, name, f"not a regular file ({what})")
    if _too_big(st.st_size):
        return _skipped(label, name, _too_big(st.st_size))
    return _entry(label, name, lambda: read_regular(path))


def _folder(root: Path) -> Iterator[Item]:
    """A folder's entries in ``os.walk`` order: a folder's own entries sorted, then its
    subfolders in order. Symlinked files are followed (their target is checked by type and
    size); symlinked folders are not (no loops), nor hidden folders: each is a skipped row."""
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        yield _broken(str(root), f"unreadable folder ({e.strerror or e})")
        return
    subfolders: list[Path] = []
    for entry in entries:
        path = Path(entry.path)
        try:
            lst = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(lst.st_mode):
                if entry.name.startswith("."):
                    yield _broken(str(path), "hidden folder (name starts with a dot; not searched)")
                else:
                    subfolders.append(path)
                continue
            if entry.name.startswith("."):
                yield _skipped(str(path), entry.name, HIDDEN)
                continue
            link = stat.S_ISLNK(lst.st_mode)
            st = os.stat(path) if link else lst
        except OSError as e:
            reason = "broken symbolic link" if isinstance(e, FileNotFoundError) else "unreadable"
            yield _skipped(str(path), entry.name, f"{reason} ({e.strerror or e})")
            continue
        yield _file_item(path, entry.name, st, link)
    for sub in subfolders:
        yield from _folder(sub)


# -- zip ---------------------------------------------------------------------------------


def _zip(path: Path) -> Iterator[Item]:
    # Left open (not a `with`): items are read in batches, possibly after this generator has
    # moved past them or finished; the file closes when the last reader is dropped.
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
        complete = _lists_everything(zf, infos)
    except ARCHIVE_ERRORS as e:
        # No readable central directory (a cut or damaged file): walk the local headers.
        yield from _zip_scan(path, _describe(e))
        return
    if not complete:
        zf.close()
        yield from _zip_scan(path, "its directory does not list every member")
        return
    for info in infos:
        name = info.filename
        label = f"{path}!{name}"
        mode = _zip_mode(info)
        if _zip_folder(info):
            continue
        if _posix(name).endswith("/") or stat.S_ISDIR(mode):
            yield _skipped(label, name, _FULL_FOLDER.format(info.file_size))
            continue
        kind = _kind(mode) if mode and not stat.S_ISREG(mode) else None
        skip = _member_skip(name, kind, info.file_size)
        if skip:
            yield _skipped(label, name, skip)
        else:
            yield _entry(label, name, _reader_zip(zf, info, label))


def _lists_everything(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> bool:
    """Whether the central directory accounts for every member in the file.

    A damaged directory can parse cleanly and still list fewer members than the file holds
    (zipfile does not check the count). A local header sitting unlisted right after a listed
    member's data (and its data descriptor, if any), or before the directory, gives it away.
    """
    fp = zf.fp
    if fp is None:
        return True
    start_dir = int(getattr(zf, "start_dir", 0))
    spans = sorted(infos, key=lambda i: i.header_offset)
    if not spans:
        fp.seek(0)
        return not (start_dir > 0 and fp.read(4) == _LOCAL_SIG)
    bounds = [i.header_offset for i in spans[1:]] + [start_dir]
    for info, bound in zip(spans, bounds, strict=True):
        fp.seek(info.header_offset)
        head = fp.read(_LOCAL.size)
        if len(head) < _LOCAL.size or head[:4] != _LOCAL_SIG:
            continue  # a damaged local header: reading that member will say so
        nlen, xlen = struct.unpack_from("<HH", head, 26)
        data_end = info.header_offset + _LOCAL.size + nlen + xlen + info.compress_size
        if bound - data_end < _LOCAL.size:
            continue
        fp.seek(data_end)
        gap = fp.read(28)
        # After the data: no descriptor, or one of 12/16 (32-bit) or 20/24 (ZIP64) bytes.
        if any(gap[k : k + 4] == _LOCAL_SIG for k in (0, 12, 16, 20, 24)):
            return False
    return True


_FULL_FOLDER = "a folder entry holding {} bytes (damaged?)"
"""A real folder entry holds nothing; one with data is a damaged name or mode: a row."""


def _zip_folder(info: zipfile.ZipInfo) -> bool:
    """A folder entry, to be ignored (a "folder" holding data is a damaged member instead)."""
    folder = _posix(info.filename).endswith("/") or stat.S_ISDIR(_zip_mode(info))
    return folder and info.file_size == 0


def _zip_mode(info: zipfile.ZipInfo) -> int:
    """The Unix file type bits a zip made on Unix records (0 when none: a regular file)."""
    return stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0


def _reader_zip(zf: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Callable[[], bytes]:
    def read() -> bytes:
        limit = _limit()
        try:
            with zf.open(info) as f:
                data = f.read(limit + 1)  # to the end when within the limit: the CRC is checked
        except ARCHIVE_ERRORS as e:
            raise OSError(f"{label}: damaged archive member ({_describe(e)})") from e
        if len(data) > limit:
            raise OSError(f"{label}: more than {limit} bytes (over the limit)")
        return data

    return read


_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIG = b"PK\x03\x04"
_DESCRIPTOR_SIG = b"PK\x07\x08"
_END_SIGS = (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07")
_CHUNK = 1 << 16


def _zip64_sizes(extra: bytes, csize: int, usize: int) -> tuple[int, int, bool]:
    """Sizes from a local header's ZIP64 extra field (when the 32-bit ones are 0xFFFFFFFF)."""
    i = 0
    while i + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, i)
        if tag == 1:
            field = extra[i + 4 : i + 4 + n]
            values = [struct.unpack_from("<Q", field, k)[0] for k in range(0, len(field) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            return csize, usize, True
        i += 4 + n
    return csize, usize, False


class _Cut(Exception):
    """The member's data runs past the end of the file."""


def _inflate(f: Any, start: int, csize: int | None, limit: int) -> tuple[bytes | None, int]:
    """Raw deflate data at ``start``: (data or None when over ``limit``, compressed length).

    With ``csize`` None (a streamed member) the deflate stream itself says where it ends.
    Output beyond the limit is decompressed and dropped, never held, so a bomb costs time
    bounded by the file, not memory.
    """
    d = zlib.decompressobj(-15)
    f.seek(start)
    parts: list[bytes] = []
    held = 0
    consumed = 0
    while not d.eof:
        want = _CHUNK if csize is None else min(_CHUNK, csize - consumed)
        if want <= 0:
            break
        chunk = f.read(want)
        if not chunk:
            raise _Cut
        consumed += len(chunk)
        out = d.decompress(chunk)  # at most ~1000x a chunk: bounded
        if held + len(out) <= limit:
            parts.append(out)
        held += len(out)
    if not d.eof:
        raise zlib.error("deflate data ends before its end marker")
    consumed -= len(d.unused_data)
    return (b"".join(parts) if held <= limit else None), consumed


def _zip_scan(path: Path, why: str) -> Iterator[Item]:
    """What can be recovered from a zip without a readable central directory, read front to
    back through its local headers as a streaming unzipper does: members before a cut or a
    damaged spot come out whole (CRC-checked); the damaged member, or the rest of the file
    when it cannot be parsed, becomes one skipped row with the reason."""
    try:
        f = path.open("rb")
    except OSError as e:
        yield _broken(str(path), f"unreadable archive ({e.strerror or e})")
        return
    with f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        last = "its start"
        while True:
            f.seek(offset)
            head = f.read(_LOCAL.size)
            if head[:4] in _END_SIGS:
                return  # every member was read; only the directory after them is damaged
            if len(head) < _LOCAL.size or head[:4] != _LOCAL_SIG:
                if offset == 0:
                    reason = f"not a readable zip archive ({why})"
                else:
                    reason = (
                        f"damaged zip archive ({why}): nothing readable after {last} "
                        f"(byte {offset} of {size})"
                    )
                yield _broken(str(path), reason)
                return
            _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL.unpack(head)
            raw_name = f.read(nlen)
            extra = f.read(xlen)
            if len(raw_name) < nlen or len(extra) < xlen:
                yield _broken(str(path), f"zip archive cut off inside a header after {last}")
                return
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
            csize, usize, zip64 = _zip64_sizes(extra, csize, usize)
            member = _Local(
                label=f"{path}!{name}",
                name=name,
                flags=flags,
                method=method,
                crc=crc,
                sizes=None if flags & 0x08 and csize == 0 else (csize, usize),
                zip64=zip64,
                start=offset + _LOCAL.size + nlen + xlen,
            )
            item, end = _scan_member(f, member, size)
            if item is not None:
                yield item
            if end is None:
                return  # the member's row says why nothing after it can be found
            offset = end
            last = name


@dataclass
class _Local:
    """A member as its local header describes it (``sizes`` None: streamed, sizes unknown)."""

    label: str
    name: str
    flags: int
    method: int
    crc: int
    sizes: tuple[int, int] | None
    zip64: bool
    start: int


def _scan_member(f: Any, m: _Local, size: int) -> tuple[Item | None, int | None]:
    """One member of :func:`_zip_scan`: (its item or None for a folder, the offset of the next
    header or None when it cannot be found)."""
    limit = _limit()
    label, name = m.label, m.name

    def skipped(reason: str) -> Item:
        return _skipped(label, name, reason)

    if m.sizes is None and (m.method != 8 or m.flags & 0x01):
        # Only a plain deflate stream marks its own end; anything else hides the next header.
        return skipped("streamed member of a damaged zip; nothing after it is readable"), None
    if m.sizes is not None and m.start + m.sizes[0] > size:
        return skipped("archive cut off inside this member"), None
    data: bytes | None = None
    failure = ""
    try:
        if m.sizes is not None:
            csize, usize = m.sizes
            end = m.start + csize
            if _posix(name).endswith("/") or _is_hidden(name):
                pass  # never read; classified below
            elif usize > limit or csize > limit:
                failure = f"{max(usize, csize)} bytes is over the {limit} byte limit"
            elif m.flags & 0x01:
                failure = "encrypted member (password needed)"
            elif m.method == 0:
                f.seek(m.start)
                data = f.read(csize)
            elif m.method == 8:
                data, _ = _inflate(f, m.start, csize, limit)
            else:
                failure = f"compression method {m.method} not supported in a damaged zip"
        else:
            data, used = _inflate(f, m.start, None, limit)
            end = m.start + used
    except _Cut:
        return skipped("archive cut off inside this member"), None
    except ARCHIVE_ERRORS as e:
        if m.sizes is None:
            return skipped(f"damaged archive member ({_describe(e)}); nothing after it is "
                           "readable"), None  # fmt: skip
        failure = f"damaged archive member ({_describe(e)})"
    crc = m.crc
    if m.flags & 0x08:  # a data descriptor follows: [signature] CRC, sizes
        f.seek(end)
        desc = f.read(4 + 4 + 16)
        signed = desc[:4] == _DESCRIPTOR_SIG
        length = (4 if signed else 0) + 4 + (16 if m.zip64 else 8)
        if len(desc) < length:
            return skipped("archive cut off inside this member"), None
        crc = struct.unpack_from("<I", desc, 4 if signed else 0)[0]
        end += length
    if _posix(name).endswith("/"):
        held = m.sizes[1] if m.sizes is not None else len(data or b"")
        return (skipped(_FULL_FOLDER.format(held)) if held else None), end
    if _is_hidden(name):
        return skipped(HIDDEN), end
    if failure:
        return skipped(failure), end
    if data is None:
        return skipped(f"more than {limit} bytes (over the limit)"), end
    if (m.sizes is not None and len(data) != m.sizes[1]) or zlib.crc32(data) != crc:
        return skipped("damaged archive member (bad CRC-32)"), end
    return _entry(label, name, lambda: data), end


# -- tar ---------------------------------------------------------------------------------


class _WatchedInfo(tarfile.TarInfo):
    """Records why tarfile stopped reading headers.

    ``tarfile`` ends its iteration silently at a missing, cut or garbled header past the
    first, which would drop the rest of a cut archive without a word; only an all-zero block
    (``EOFHeaderError``) is the archive's real end. A subclass is made per archive so the
    record is not shared.
    """

    last_error: type[tarfile.HeaderError] | None = None

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _WatchedInfo:
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            cls.last_error = type(e)
            raise
        cls.last_error = None
        return info


_CUT_WORDS = ("unexpected end of data", "ended before the end-of-stream marker")
"""tarfile's and the decompressors' words for data that stops inside a member: the file (or
its compressed stream) ends there."""

# tarfile's header errors by cause: real classes of the module, left out of its type stubs
# (typeshed) as undocumented.
_EOFHeaderError: type[tarfile.HeaderError] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_EmptyHeaderError: type[tarfile.HeaderError] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]
_TruncatedHeaderError: type[tarfile.HeaderError] = tarfile.TruncatedHeaderError  # type: ignore[attr-defined]
_InvalidHeaderError: type[tarfile.HeaderError] = tarfile.InvalidHeaderError  # type: ignore[attr-defined]

_TAR_ENDS = {
    _EmptyHeaderError: "archive ends without its end marker (cut off?)",
    _TruncatedHeaderError: "archive cut off inside a header",
    _InvalidHeaderError: "damaged header",
}

_DECOMPRESSORS: tuple[tuple[bytes, Callable[[IO[bytes]], io.BufferedIOBase]], ...] = (
    (b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
    (b"BZh", lambda f: bz2.BZ2File(f, "rb")),
    (b"\xfd7zXZ\x00", lambda f: lzma.LZMAFile(f, "rb")),
)
"""Known by their first bytes, whatever the file's name says. These check their stream's
CRC and length (tarfile's own gzip reader does not), so damage is reported, not read as
data."""


class _Deferred:
    """A stream whose first error reads as the end of data, and is raised on the next read.

    tarfile reads ahead in large blocks and drops what one block gathered when the read
    raises, which would lose complete members just before a cut or damaged spot; this way
    they come out whole, and the damage is reported for the next member (or the rest).
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream  # buffered: a file, GzipFile, BZ2File or LZMAFile (has read1)
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None:
            raise self.error
        parts: list[bytes] = []
        n = 0
        while size < 0 or n < size:
            try:
                # read1: one step at a time, so nothing gathered is lost to an error
                chunk = self.stream.read1(_CHUNK if size < 0 else size - n)
            except ARCHIVE_ERRORS as e:
                self.error = e
                break
            if not chunk:
                break
            parts.append(chunk)
            n += len(chunk)
        return b"".join(parts)


def _is_cut(text: str) -> bool:
    return any(words in text for words in _CUT_WORDS)


def _tar(path: Path) -> Iterator[Item]:
    """A tar, plain or compressed, read as one forward-only stream (never random access)."""
    with ExitStack() as stack:
        try:
            raw = stack.enter_context(path.open("rb"))
            magic = raw.read(6)
            raw.seek(0)
            opener = next((o for m, o in _DECOMPRESSORS if magic.startswith(m)), None)
            stream = _Deferred(raw if opener is None else stack.enter_context(opener(raw)))
        except ARCHIVE_ERRORS as e:
            yield _broken(str(path), f"unreadable archive ({_describe(e)})")
            return
        yield from _tar_stream(path, stream, compressed=opener is not None)


def _tar_stream(path: Path, stream: _Deferred, compressed: bool) -> Iterator[Item]:
    watch: type[_WatchedInfo] = type("_Watch", (_WatchedInfo,), {"last_error": None})
    try:
        # typeshed wants a fileobj that can also write, tell and seek; stream mode ("r|")
        # only ever reads it.
        tf = tarfile.open(fileobj=stream, mode="r|", tarinfo=watch)  # type: ignore[call-overload]
    except ARCHIVE_ERRORS as e:
        yield _broken(str(path), f"not a readable tar archive ({_describe(e)})")
        return
    last = "its start"
    last_cut = False
    members = iter(tf)
    while True:
        try:
            member = next(members)
        except StopIteration:
            break
        except ARCHIVE_ERRORS as e:
            if last_cut and _is_cut(str(e)):
                return  # the file ends in the member before: its row already says so
            yield _broken(str(path), f"damaged archive after {last} ({_describe(e)}); "
                                     "nothing after it is readable")  # fmt: skip
            return
        item = _tar_member(tf, member, f"{path}!{member.name}")
        if item is not None:
            yield item
            last_cut = _is_cut(item.skip)
        last = member.name
    end = watch.last_error
    if end is not None and end is not _EOFHeaderError:
        if last_cut and end in (_EmptyHeaderError, _TruncatedHeaderError):
            return  # the cut member's own row already says the archive ends there
        reason = _TAR_ENDS.get(end, "damaged archive")
        yield _broken(str(path), f"{reason} after {last}; nothing after it is readable")
        return
    if compressed:
        # The stream's check sits at its very end: read on to it. Damage that made a header
        # read as the end marker (all zeros) would otherwise drop the rest without a word.
        try:
            while stream.read(_CHUNK):
                pass
            if stream.error is not None:
                raise stream.error
        except ARCHIVE_ERRORS as e:
            reason = f"compressed data damaged or cut off after {last} ({_describe(e)})"
            yield _broken(str(path), f"{reason}; members after it may be missing")


_TAR_KINDS = {
    tarfile.SYMTYPE: "symbolic link",
    tarfile.LNKTYPE: "hard link",
    tarfile.FIFOTYPE: "FIFO",
    tarfile.CHRTYPE: "character device",
    tarfile.BLKTYPE: "block device",
}
"""What a non-regular tar member is, in words (tar has hard links, which no stat mode names)."""


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, label: str) -> Item | None:
    name = member.name
    if member.isdir():  # a real folder holds nothing; one with data is a damaged header
        return _skipped(label, name, _FULL_FOLDER.format(member.size)) if member.size else None
    kind = None if member.isreg() else _TAR_KINDS.get(member.type, f"type {member.type!r}")
    skip = _member_skip(name, kind, member.size)
    if skip:
        return _skipped(label, name, skip)
    # A stream cannot go back, so the member is read now, while the stream is on it.
    try:
        f = tf.extractfile(member)
        if f is None:
            return _skipped(label, name, "cannot read this archive member")
        data = f.read(_limit() + 1)
    except ARCHIVE_ERRORS as e:
        return _skipped(label, name, f"damaged archive member ({_describe(e)})")
    return _entry(label, name, lambda: data)


# -- inputs ------------------------------------------------------------------------------


def is_archive(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))


def check_inputs(inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Raises ``FileNotFoundError`` naming the first input that does not exist, so a typo
    fails the run before any work rather than after the inputs before it."""
    for raw in inputs:
        if not os.path.lexists(raw):
            raise FileNotFoundError(f"input not found: {raw}")


def iter_items(inputs: Sequence[str | os.PathLike[str]]) -> Iterator[Item]:
    """Yields every entry of every input, in order. Missing inputs raise ``FileNotFoundError``."""
    for raw in inputs:
        path = Path(raw)
        try:
            st = path.stat()
        except FileNotFoundError:
            if not os.path.lexists(path):
                raise FileNotFoundError(f"input not found: {path}") from None
            yield _skipped(str(path), path.name, "broken symbolic link")
            continue
        except OSError as e:
            yield _skipped(str(path), path.name, f"unreadable ({e.strerror or e})")
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _folder(path)
        elif stat.S_ISREG(st.st_mode) and path.name.lower().endswith(".zip"):
            yield from _zip(path)
        elif stat.S_ISREG(st.st_mode) and is_archive(path):
            yield from _tar(path)
        else:
            yield _file_item(path, path.name, st, path.is_symlink())


def count_items(inputs: Sequence[str | os.PathLike[str]]) -> int | None:
    """The number of items, when it is cheap to know (folders, zips); None for tar streams
    and for zips that need :func:`_zip_scan`. Only sizes a progress bar: never raises."""
    total = 0
    for raw in inputs:
        path = Path(raw)
        try:
            if path.is_dir():
                total += sum(1 for _ in _folder(path))
            elif path.is_file() and path.name.lower().endswith(".zip"):
                with zipfile.ZipFile(path) as zf:
                    total += sum(1 for i in zf.infolist() if not _zip_folder(i))
            elif path.is_file() and is_archive(path):
                return None
            else:
                total += 1
        except ARCHIVE_ERRORS:
            return None
    return total
