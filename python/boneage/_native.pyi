"""Type stubs for boneage._native, the Rust image core.

Every image is a 2-D ``numpy.ndarray`` of ``uint8`` (height, width). Inputs are never
modified; outputs are new C-contiguous arrays. Pixel work runs with the GIL released and
batch functions run in parallel. Bad arguments raise ``ValueError`` (``TypeError`` for a
non-array), unreadable or corrupt files raise ``OSError`` naming the file and the reason.

Bounded resources (the native core never aborts the process):

- Decoders refuse, from the header and before decoding (``OSError``), images over
  ``max_pixels`` and images thinner than any radiograph: a long side over 10 times the short
  side, unless the long side is at most 4096 px (aspect-ratio policy).
- Every buffer derived from an image (padded square, resize output and passes, CLAHE image) is
  checked before it is allocated: over 2**30 elements is a ``ValueError`` naming the buffer
  (``pad_to_square`` of a 1 x 200,000 array would need a 40-gigapixel square).
- A buffer the allocator refuses is a ``MemoryError``, never an abort.
"""

import os
from collections.abc import Iterator, Sequence
from typing import Any, Literal, TypedDict, final

import numpy as np
import numpy.typing as npt

# Checked against the built module in CI: python -m mypy.stubtest boneage._native
# A default shown as ``...`` is the run-time one: ``tile_grid=(8, 8)``,
# ``max_pixels=DEFAULT_MAX_PIXELS``.

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "HAND_MARGIN",
    "RESERVED_KEYS",
    "CorruptRecordError",
    "ExampleReader",
    "RecordReader",
    "ShardWriter",
    "__version__",
    "augment_images",
    "choose_crop",
    "clahe",
    "count_records",
    "decode_example",
    "decode_gray",
    "decode_many",
    "encode_example",
    "is_gzip_file",
    "localise_hand",
    "pad_to_square",
    "parse_shard_name",
    "preprocess",
    "preprocess_batch",
    "preprocess_files",
    "process_encoded",
    "read_examples",
    "read_gray",
    "read_gray_files",
    "read_records",
    "resize_area",
    "resize_linear",
    "shard_glob",
    "shard_index",
    "shard_name",
]

# Stub-only aliases (private names: they do not exist at run time).
_Image = npt.NDArray[np.uint8]
_Box = tuple[int, int, int, int]
_StrPath = str | os.PathLike[str]
_ItemError = tuple[int, str, str]
"""(index in the input, path or ``images[i]``, reason)."""

__version__: str
DEFAULT_MAX_PIXELS: int
HAND_MARGIN: float
"""The paper's margin around the hand: 5 % of the image height on every side of the box."""
"""Decoders refuse images with more pixels than this (decompression-bomb guard): 100 MP."""

def clahe(img: _Image, clip_limit: float = 2.0, tile_grid: tuple[int, int] = ...) -> _Image:
    """CLAHE; bit-exact with ``cv2.createCLAHE(clip_limit, tile_grid).apply(img)``.

    ``tile_grid`` is (columns, rows), like OpenCV's ``tileGridSize``; ``clip_limit=0``
    disables clipping.
    """

def pad_to_square(img: _Image) -> _Image:
    """Centred zero padding to an m x m square, m = max(h, w).

    ``x_pad = (m - w) // 2`` and ``y_pad = (m - h) // 2``; equivalent to
    ``cv2.copyMakeBorder(img, y_pad, m-h-y_pad, x_pad, m-w-x_pad, cv2.BORDER_CONSTANT, 0)``.

    Raises:
        ValueError: the square would hold more than 2**30 pixels (checked before allocating).
    """

def resize_area(img: _Image, width: int, height: int) -> _Image:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)``, bit-exact."""

def resize_linear(img: _Image, width: int, height: int) -> _Image:
    """``cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)``, bit-exact."""

def decode_gray(data: bytes, max_pixels: int = ..., *, allow_truncated: bool = False) -> _Image:
    """PNG or JPEG bytes to 8-bit grey, as ``cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)``.

    16-bit grey keeps the high byte; colour is converted as libpng/libjpeg do for OpenCV
    (CMYK/YCCK JPEGs with OpenCV's own CMYK formula). Raises ``OSError`` for undecodable bytes,
    images over ``max_pixels`` or thinner than the aspect-ratio policy allows, and JPEGs whose
    data is cut short or damaged (libjpeg's premature-end / corrupt-data warnings: OpenCV would
    return the image with the rest grey). ``allow_truncated=True`` accepts those, as OpenCV.
    """

def read_gray(path: _StrPath, max_pixels: int = ..., *, allow_truncated: bool = False) -> _Image:
    """A PNG/JPEG file to 8-bit grey, as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``; errors as
    :func:`decode_gray`, naming the file."""

def preprocess(
    img: _Image,
    crop: _Box | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = ...,
) -> _Image:
    """crop (x0, y0, x1, y1) -> CLAHE -> pad_to_square -> resize_area to size x size.

    Fused (no intermediate images on the downscaling path), byte-identical to the steps one
    by one and to :func:`boneage.ingest.reference.preprocess`. The crop's far edges are clamped to
    the image; it must start inside the image and be non-empty. The work is one pass over the
    crop's pixels plus the output, whatever its shape: a 3,000,000 x 1 array takes a fraction
    of a second (only the output columns the content reaches are computed).
    """

def preprocess_batch(
    images: Sequence[_Image],
    crops: Sequence[_Box | None] | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = ...,
    threads: int | None = None,
) -> tuple[npt.NDArray[np.uint8], list[_ItemError]]:
    """:func:`preprocess` over many arrays in parallel.

    Returns an (N, size, size) array in input order and the per-item errors; a failed
    item's slot is all zeros. ``threads=None`` uses all cores.
    """

def preprocess_files(
    paths: Sequence[_StrPath],
    crops: Sequence[_Box | None] | None = None,
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = ...,
    threads: int | None = None,
    max_pixels: int = ...,
    *,
    allow_truncated: bool = False,
) -> tuple[npt.NDArray[np.uint8], list[_ItemError]]:
    """Decode + :func:`preprocess` for many files in parallel.

    One bad file never loses the others: it is listed in the errors with its path and the
    reason, and its slot in the (N, size, size) result is all zeros.
    """

def read_gray_files(
    paths: Sequence[_StrPath],
    threads: int | None = None,
    max_pixels: int = ...,
    *,
    allow_truncated: bool = False,
) -> tuple[list[_Image | None], list[_ItemError]]:
    """Decodes many files in parallel; ``None`` where a file failed (see the errors)."""

def localise_hand(img: _Image, margin: float = ...) -> dict[str, Any]:
    """The radiograph hand localiser (no OpenCV equivalent).

    Returns ``box`` (x0, y0, x1, y1; end-exclusive, margin included), ``plausible`` (use the
    box only when true), ``area_fraction``, ``inverted``, ``threshold`` and ``depth`` (how many
    containers, such as a lit cassette or a collimated field, the hand was found inside).
    """

def choose_crop(img: _Image, localiser: str = "native", margin: float = ...) -> dict[str, Any]:
    """The crop rule of the bulk job, in one place: the localiser's box when it is plausible,
    else the whole image.

    Returns ``box`` (x0, y0, x1, y1), ``localiser`` (``"native"`` or ``"none"``, the one used)
    and ``native`` (the :func:`localise_hand` dict, or None for ``localiser="none"``).
    """

def process_encoded(
    datas: Sequence[bytes],
    labels: Sequence[str] | None = None,
    localiser: Literal["native", "none"] = "native",
    size: int = 256,
    clip_limit: float = 2.0,
    tile_grid: tuple[int, int] = ...,
    margin: float = ...,
    threads: int | None = None,
    max_pixels: int = ...,
    *,
    allow_truncated: bool = False,
) -> tuple[npt.NDArray[np.uint8], list[dict[str, Any] | None], list[_ItemError]]:
    """decode -> localise -> crop -> CLAHE -> pad -> resize for encoded images, in parallel."""

def decode_many(
    datas: Sequence[bytes],
    threads: int | None = None,
    max_pixels: int = ...,
    *,
    allow_truncated: bool = False,
) -> tuple[list[_Image | None], list[_ItemError]]:
    """Decodes many encoded images in parallel; None where one failed."""

# --- TFRecord shards and batch augmentation (rust/tfrecord/, rust/augment.rs)

_Path = str | os.PathLike[str]
_Paths = _Path | Sequence[_Path]

class CorruptRecordError(OSError):
    """A corrupt or truncated TFRecord record, or a record that is not a tf.train.Example.

    ``str(err)`` names the file and the byte offset of the record's start (in the
    decompressed stream for a GZIP file); the same are in ``path`` and ``offset``.
    """

    path: str
    offset: int

# Stub-only types (plain dicts at run time).
class _ShardSummaryEntry(TypedDict):
    index: int
    path: str
    records: int
    bytes: int  # on disk (compressed size for GZIP)
    raw_bytes: int  # framed records before compression

class _ShardSummary(TypedDict):
    directory: str
    split: str
    num_shards: int
    compression: Literal["GZIP"] | None
    records: int
    bytes: int
    shards: list[_ShardSummaryEntry]

@final
class ShardWriter:
    """Writes cases as tf.train.Example records into ``num_shards`` TFRecord files.

    Shard ``i`` is ``{directory}/{split}-{i:05d}-of-{num_shards:05d}.tfrecord`` (``.tfrecord.gz``
    with ``compression="GZIP"``, one gzip member that ``tf.data.TFRecordDataset(...,
    compression_type="GZIP")`` reads). A case goes to shard ``fnv1a64(utf8(id)) % num_shards``
    (64-bit FNV-1a; see :func:`shard_index`), so reruns and parallel workers agree.

    Each shard is written to a hidden temporary ``.{name}.tmp-{pid}-{k}`` in the same directory
    and renamed to its final name by :meth:`close` only after it was flushed and fsynced (then
    the directory is fsynced). A crash never leaves a truncated file under a final name. Every
    shard is published, empty ones too (valid 0-record files), so readers of ``num_shards``
    files work. If an earlier run left shards under the same names they are replaced.

    As a context manager: a clean exit calls :meth:`close`; an exception calls :meth:`abort`
    (temporaries removed, nothing published) and propagates. A writer that is garbage collected
    without ``close()`` also removes its temporaries.

    Methods may be called from several threads at once (each shard has its own lock).

    Args:
        directory: created if missing.
        split: a plain name (no path separators), e.g. ``"train"``.
        num_shards: 1 to 99999.
        compression: ``None`` or ``"GZIP"``.
        compression_level: 0-9 (default 6, zlib's and TensorFlow's default), GZIP only.
        shards: the shard indices this writer owns (default all). Parallel workers can each
            own a disjoint subset of the same split; writing a case that hashes to a shard
            another worker owns raises ``ValueError``.
        fsync: sync shards and directory on close (default True). ``False`` keeps the
            no-partial-file guarantee against a crashed process but not against power loss.

    Raises:
        ValueError: bad arguments. OSError: the directory or a file cannot be created.
    """

    def __new__(
        cls,
        directory: _Path,
        split: str,
        num_shards: int,
        compression: Literal["GZIP"] | None = None,
        *,
        compression_level: int | None = None,
        shards: Sequence[int] | None = None,
        fsync: bool = True,
    ) -> ShardWriter: ...
    def write(
        self,
        image: npt.NDArray[np.uint8],
        id: str | int,
        male: int | bool | None = None,
        age: float | None = None,
        **extra: str | bytes | int | float | Sequence[int] | Sequence[float] | Sequence[str],
    ) -> int:
        """Adds one case; returns the index of its shard.

        Record keys: ``image`` (raw uint8 pixels, row major), ``height``, ``width`` (int64),
        ``id`` (UTF-8 text), ``male`` (int64 0/1; absent when None or NaN), ``age`` (float32
        months; absent when None or NaN), and each ``extra``: str -> bytes, bytes -> bytes,
        int -> int64, float -> float32, a list/tuple/1-D array of ints -> int64 list (e.g. a
        crop ``box``), of floats (or ints and floats) -> float list, of str/bytes -> bytes list.

        Args:
            image: 2-D uint8 array (height, width); non-contiguous views are copied.
        Raises:
            ValueError: not a non-empty 2-D uint8 array, empty id, male not 0/1, non-finite
                age, a reserved or unsupported extra, the writer closed or aborted, or the id
                belongs to a shard this writer does not own.
            OSError: a write failed (the shard is then never published).
        """

    def write_batch(
        self,
        images: npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]],
        ids: Sequence[str | int],
        males: Sequence[int | bool | float | None] | npt.NDArray[Any] | None = None,
        ages: Sequence[float | None] | npt.NDArray[Any] | None = None,
        extras: dict[str, Sequence[Any]] | None = None,
    ) -> list[int]:
        """Adds many cases (same keys as :meth:`write`): ``images`` a 3-D uint8 array
        (count, height, width) or a sequence of 2-D arrays; the other arguments one entry per
        image (``extras`` maps a key to a column). Every argument is checked before anything is
        written; encoding and writing run without the GIL, shards in parallel. Returns the
        shard index of each case. Byte-for-byte the same files as the same ``write`` calls."""

    def close(self) -> _ShardSummary:
        """Flushes, fsyncs and publishes every shard; returns the summary (records and bytes
        per shard). Calling it again returns the same summary.

        Raises:
            ValueError: the writer was aborted. OSError: flushing or renaming failed (then
                nothing that failed to flush is published; the temporaries are removed).
        """

    def abort(self) -> None:
        """Removes the temporaries without publishing anything (no-op after close())."""

    def __enter__(self) -> ShardWriter: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...
    @property
    def directory(self) -> str: ...
    @property
    def split(self) -> str: ...
    @property
    def num_shards(self) -> int: ...
    @property
    def compression(self) -> Literal["GZIP"] | None: ...
    @property
    def paths(self) -> list[str]:
        """Final paths of the owned shards (they exist only after close())."""

    @property
    def records(self) -> int:
        """Records written so far."""

    @property
    def closed(self) -> bool: ...
    @property
    def summary(self) -> _ShardSummary | None:
        """The close() summary, or None before a successful close()."""

@final
class RecordReader(Iterator[bytes]):
    """Iterator over raw records; see :func:`read_records`."""

    def __iter__(self) -> RecordReader: ...
    def __next__(self) -> bytes: ...
    @property
    def skipped(self) -> int:
        """Corrupt stretches skipped so far (``skip_corrupt=True``)."""

    @property
    def problems(self) -> list[tuple[str, int, str]]:
        """``(path, offset, message)`` of each skipped stretch."""

    @property
    def paths(self) -> list[str]: ...
    def close(self) -> None:
        """Closes the file in hand; the iterator then ends."""

    def __enter__(self) -> RecordReader: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

@final
class ExampleReader(Iterator[dict[str, Any]]):
    """Iterator over decoded examples; see :func:`read_examples`."""

    def __iter__(self) -> ExampleReader: ...
    def __next__(self) -> dict[str, Any]: ...
    @property
    def skipped(self) -> int:
        """Corrupt stretches and non-Example records skipped so far (``skip_corrupt=True``)."""

    @property
    def problems(self) -> list[tuple[str, int, str]]:
        """``(path, offset, message)`` of each skipped stretch."""

    @property
    def paths(self) -> list[str]: ...
    def close(self) -> None: ...
    def __enter__(self) -> ExampleReader: ...
    def __exit__(self, exc_type: object, exc: object, tb: object) -> bool: ...

def read_records(paths: _Paths, *, skip_corrupt: bool = False) -> RecordReader:
    """Iterates over the raw records (bytes) of one or more TFRecord files, in order.

    GZIP files are recognised by content (gzip magic ``1f 8b`` unless the first 12 bytes are a
    valid record header), whatever their name. Both checksums of every record are verified;
    records are read in chunks (64 records or 8 MiB) without the GIL. Files are opened one at
    a time; all must exist when this is called.

    Raises:
        FileNotFoundError / OSError: a path is missing, a directory, or unreadable (at call).
        CorruptRecordError (during iteration): a bad checksum or a truncated record, naming the
            file and byte offset; the records before it are delivered first, then the iterator
            ends. With ``skip_corrupt=True`` corrupt stretches are skipped and counted instead
            (``skipped``, ``problems``): a bad data checksum skips that record, a bad length
            checksum scans forward to the next valid record, a truncated tail or a broken gzip
            stream ends that file.
    """

def read_examples(paths: _Paths, *, skip_corrupt: bool = False) -> ExampleReader:
    """Like :func:`read_records`, yielding each tf.train.Example as a dict (keys sorted):

    - ``image``: a (height, width) uint8 numpy array when ``height`` and ``width`` match the
      size of its bytes (otherwise the bytes);
    - bytes features as ``str`` when valid UTF-8, else ``bytes`` (``id`` is a ``str``);
    - int64 features as ``int``; float features as ``float``: the shortest decimal that
      round-trips the stored float32 (``age=120.3`` reads back as ``120.3``);
    - a feature with one value as a scalar, with several (or none) as a list (a 1-element
      list extra therefore reads back as a scalar).

    A record that is not a valid Example raises CorruptRecordError (or is skipped).
    """

def count_records(paths: _Paths) -> int:
    """Number of records in one or more files. Plain files are walked header to header (length
    checksums verified, data skipped); GZIP files are decompressed and fully verified.

    Raises:
        CorruptRecordError: a corrupt header or truncated record.
    """

def encode_example(
    image: npt.NDArray[np.uint8],
    id: str | int,
    male: int | bool | None = None,
    age: float | None = None,
    **extra: Any,
) -> bytes:
    """The serialised tf.train.Example that :meth:`ShardWriter.write` stores for these
    arguments: byte-for-byte ``tf.train.Example.SerializeToString(deterministic=True)`` (keys
    sorted, except that Python protobuf's upb writes a key before any key that is its prefix,
    e.g. ``"height"`` before ``"h"``; protobuf C++ would not, which only matters for such
    pairs)."""

def decode_example(data: bytes) -> dict[str, Any]:
    """Decodes a serialised tf.train.Example into the dict :func:`read_examples` yields.

    Raises:
        ValueError: not a valid tf.train.Example.
    """

def shard_index(id: str | int, num_shards: int) -> int:
    """The shard a case goes to: 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime
    0x100000001b3) of the id's UTF-8 bytes, modulo ``num_shards``. An int id is its decimal
    text."""

RESERVED_KEYS: tuple[str, ...]
"""The keys of a case record that the writer sets itself (``image``, ``height``, ``width``,
``id``, ``male``, ``age``); extra features may not use them."""

def shard_name(
    split: str, index: int, num_shards: int, compression: Literal["GZIP"] | None = None
) -> str:
    """The file name :class:`ShardWriter` gives shard ``index`` of ``num_shards``:
    ``{split}-{index:05d}-of-{num_shards:05d}.tfrecord`` (``.tfrecord.gz`` with GZIP).

    Raises:
        ValueError: a split that is not a plain name, ``num_shards`` outside 1..99999, or an
            index outside ``0..num_shards``.
    """

def parse_shard_name(name: str) -> tuple[str, int, int, bool] | None:
    """``(split, index, num_shards, gzip)`` of a shard file name (a bare name, not a path), or
    ``None`` for any name :class:`ShardWriter` does not write (hidden temporaries included).
    The index is not checked against the count."""

def shard_glob(split: str = "*") -> str:
    """A glob pattern for the shard files of ``split``: ``{split}-*-of-*.tfrecord*``."""

def is_gzip_file(path: _Path) -> bool:
    """Whether a TFRecord file is GZIP-compressed, judged by content exactly as the readers
    judge it: gzip magic ``1f 8b`` unless the first 12 bytes also form a valid record header.

    Raises:
        OSError: the file cannot be opened or read.
    """

def augment_images(
    images: npt.NDArray[np.uint8] | Sequence[npt.NDArray[np.uint8]],
    affine: npt.ArrayLike,
    contrast: npt.ArrayLike | None = None,
    brightness: npt.ArrayLike | None = None,
) -> npt.NDArray[np.float32]:
    """Augments n same-size uint8 images in one fused pass per pixel, in parallel over images
    and without the GIL; returns float32 (n, height, width) in [0, 1].

    ``affine`` (n, 6) rows ``[a0, a1, a2, b0, b1, b2]`` map each output pixel (x, y) to the
    input point (a0 x + a1 y + a2, b0 x + b1 y + b2), sampled bilinearly with zeros outside
    (TensorFlow's ImageProjectiveTransformV3, BILINEAR, CONSTANT 0; positions in 32-bit fixed
    point, weights in 16 bits: within 2e-4 of it). Then ``v = clip((x - mean) * contrast + mean
    + brightness, 0, 1)`` with ``x`` the warped pixel / 255 and ``mean`` the mean of the source
    image / 255. Defaults: contrast 1, brightness 0. With the identity transform and defaults
    the result is exactly ``image * float32(1 / 255)``.

    Raises:
        ValueError: images not uint8 of one size, wrong row counts, non-finite contrast or
            brightness.
    """
