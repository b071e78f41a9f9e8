"""DICOM radiographs to the 8-bit grey image every other input becomes.

Hospitals export radiographs from the PACS as DICOM, not PNG. This module turns one DICOM
file (its bytes) into the ``uint8`` grey array that a PNG of the same film would decode to,
so that everything after decoding (localiser, crop, CLAHE, resize, the model) is the code a
PNG goes through, and a DICOM gives the estimate of the PNG it was made from.

Pixels follow the DICOM display pipeline (PS3.3 C.11, PS3.4 N.2): the Modality LUT (rescale
slope/intercept or a LUT), then the VOI LUT or window centre/width when the file has one
(else a robust 0.5-99.5 percentile range, since a raw 12-bit detector range is mostly
empty), mapped to 0..255 once, after the window, and inverted for MONOCHROME1 so that bone is
bright. Data that is already 8-bit with no transform is passed through unchanged. A
multi-frame file gives its first frame and says so. Colour is converted as OpenCV converts
RGB to grey.

pydicom (and the pylibjpeg plugins for compressed transfer syntaxes) is optional: nothing
here imports it until a DICOM file arrives, and then its absence is a clear error naming
``pip install 'boneage[dicom]'``. Every failure is a :class:`DicomError` (a ``ValueError``)
whose message never quotes a patient identifier: only the fields named in
:attr:`DicomInfo.manifest_fields` and ``PatientSex`` are read from the header.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import numpy as np

from boneage.ingest.dicom_age import dicom_age_months
from boneage.settings import parse_sex

MAGIC = b"DICM"
MAGIC_OFFSET = 128
"""A DICOM Part 10 file has a 128-byte preamble and then ``DICM``: how a file is recognised,
whatever its name says."""

DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
INSTALL_HINT = "pip install 'boneage[dicom]'"
ROBUST_PERCENTILES = (0.5, 99.5)
"""The range mapped to 0..255 when a file has no window: a few hot or dead pixels (labels,
collimator edges) must not squeeze the hand into a handful of grey levels."""

_DEFLATED = b"1.2.840.10008.1.2.1.99"
"""Deflated Explicit VR Little Endian: pydicom inflates such a dataset without a bound, so a
small file could demand any amount of memory; refused before parsing."""

_BIG_ENDIAN = "1.2.840.10008.1.2.2"
"""Explicit VR Big Endian (retired, still written): the one syntax whose OW words are
big-endian."""

_IDENTIFIERS = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",
    "AccessionNumber", "PatientAddress", "PatientTelephoneNumbers", "IssuerOfPatientID",
    "PatientMotherBirthName", "MedicalRecordLocator", "ReferringPhysicianName",
)  # fmt: skip
"""Header values that identify a patient: scrubbed from any error text that might quote them."""

MANIFEST_FIELDS = (
    "dicom_sop_uid", "dicom_modality", "dicom_photometric", "dicom_bits",
    "dicom_transfer_syntax", "dicom_window", "dicom_note",
)  # fmt: skip
"""The manifest columns a DICOM input fills (empty for other inputs)."""


class DicomError(ValueError):
    """A DICOM input that cannot become an image; the message is the reason (no identifiers).

    ``fields`` holds what was learnt before the failure (the SOP Instance UID, for one), so a
    skipped manifest row can still name the instance.
    """

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})


@dataclass(frozen=True)
class DicomInfo:
    """What a DICOM header said about an image, minus anything that identifies the patient."""

    sop_uid: str = ""
    modality: str = ""
    photometric: str = ""
    bits: str = ""
    transfer_syntax: str = ""
    window: str = ""
    male: int | None = None
    age_months: float | None = None
    """The patient's age at the study (``PatientAge``, else the study or acquisition date
    minus the birth date; :mod:`boneage.ingest.dicom_age`); never the dates themselves."""
    age_source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def manifest_fields(self) -> dict[str, str]:
        """The manifest columns of :data:`MANIFEST_FIELDS` for this image."""
        return dict(
            zip(
                MANIFEST_FIELDS,
                (self.sop_uid, self.modality, self.photometric, self.bits,
                 self.transfer_syntax, self.window, "; ".join(self.notes)),
                strict=True,
            )
        )  # fmt: skip


@dataclass(frozen=True)
class DicomImage:
    pixels: np.ndarray
    """uint8 (H, W), bone bright: what a PNG of the film decodes to."""
    info: DicomInfo


# -- recognising DICOM --------------------------------------------------------------------


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` is a DICOM Part 10 file (``DICM`` after the 128-byte preamble)."""
    return data[MAGIC_OFFSET : MAGIC_OFFSET + len(MAGIC)] == MAGIC


def may_be_dicom(name: str) -> bool:
    """Whether a file of this name could be DICOM, so that it is worth reading to find out.

    PACS exports name files ``IM000001`` (no extension), ``1.2.840.113619.2.55.1`` (a UID,
    whose last part looks like an extension) or ``*.dcm``; only the content can tell.
    """
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix in DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit()


def file_is_dicom(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` starts like DICOM (reads 132 bytes; False if unreadable
    or not a regular file, so the caller's own reader reports the real problem)."""
    try:
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            return is_dicom(f.read(MAGIC_OFFSET + len(MAGIC)))
    except OSError:
        return False


# -- reading ------------------------------------------------------------------------------


def read_dicom(data: bytes, max_pixels: int | None = None) -> DicomImage:
    """DICOM bytes -> :class:`DicomImage`; raises :class:`DicomError` with the reason.

    ``max_pixels`` (rows x columns) is checked on the header before any pixel is decoded,
    the same limit PNG and JPEG inputs get.
    """
    if not is_dicom(data):
        raise DicomError("not a DICOM file (no DICM marker at byte 128)")
    if _meta_names(data, _DEFLATED):
        raise DicomError("unsupported transfer syntax Deflated Explicit VR Little Endian")
    pydicom = _pydicom()
    ds: Any = None
    try:
        with warnings.catch_warnings():
            # pydicom warns about odd header values by quoting them: never echo a header.
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data))
            return _image(ds, max_pixels)
    except DicomError as e:
        raise DicomError(_redact(str(e), ds), _fields(ds) or e.fields) from None
    except Exception as e:  # a hostile file can make pydicom raise anything; none is fatal
        text = _redact(_describe(e), ds)
        raise DicomError(f"unreadable DICOM ({text})", _fields(ds)) from None


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError:
        raise DicomError(f"reading DICOM needs pydicom: {INSTALL_HINT}") from None
    return pydicom


def _meta_names(data: bytes, uid: bytes) -> bool:
    """Whether the file meta group (explicit VR little endian, right after ``DICM``) holds
    ``uid``; a header too short to say is left to pydicom."""
    start = MAGIC_OFFSET + len(MAGIC)
    head = data[start : start + 12]
    if len(head) < 12 or head[:4] != b"\x02\x00\x00\x00" or head[4:6] != b"UL":
        return uid in data[start : start + 1024]
    (length,) = struct.unpack_from("<I", head, 8)
    return uid in data[start + 12 : start + 12 + min(length, 1 << 16)]


def _image(ds: Any, max_pixels: int | None) -> DicomImage:
    """The decoded, windowed, 8-bit first frame of a parsed dataset."""
    _check_has_pixels(ds)
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    if rows < 1 or cols < 1:
        raise DicomError(f"no image size in the header (Rows {rows}, Columns {cols})")
    if max_pixels is not None and rows * cols > max_pixels:
        raise DicomError(f"{cols}x{rows} image is over the {max_pixels} pixel limit")
    _check_decoder(ds)
    frames = int(ds.get("NumberOfFrames") or 1)
    notes = (f"multi-frame: first of {frames} frames used",) if frames > 1 else ()
    ds.pixel_array_options(index=0)
    raw = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    grey, window = _to_grey8(raw, ds, photometric)
    age, age_source = dicom_age_months(ds)
    info = DicomInfo(
        **{k.removeprefix("dicom_"): v for k, v in _fields(ds).items()},
        window=window,
        male=parse_sex(str(ds.get("PatientSex") or "")),
        age_months=age,
        age_source=age_source,
        notes=notes,
    )
    return DicomImage(np.ascontiguousarray(grey), info)


def _check_has_pixels(ds: Any) -> None:
    if "PixelData" in ds:
        return
    if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
        raise DicomError("float pixel data is not a radiograph (not supported)")
    modality = str(ds.get("Modality") or "").strip()
    if not modality:  # a header cut off before it named its modality
        raise DicomError("no pixel data (the file is cut short, or not an image)")
    raise DicomError(f"no pixel data: not an image (Modality {modality})")


def _check_decoder(ds: Any) -> None:
    """Refuses a transfer syntax nothing can decode, naming what to install when the
    decoder exists but its plugin is missing."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        raise DicomError("no transfer syntax in the file meta information")
    name = uid.name if uid.is_transfer_syntax else str(uid)
    try:
        decoder = get_decoder(uid)
    except (NotImplementedError, ValueError):
        raise DicomError(f"unsupported transfer syntax {name}") from None
    if uid.is_compressed and not decoder.is_available:
        raise DicomError(f"no decoder installed for {name}: {INSTALL_HINT}")


# -- pixels -------------------------------------------------------------------------------


def _to_grey8(raw: np.ndarray, ds: Any, photometric: str) -> tuple[np.ndarray, str]:
    """uint8 grey and a description of the value mapping used (for the manifest)."""
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        return _monochrome(raw, ds, invert=photometric == "MONOCHROME1")
    if photometric == "PALETTE COLOR":
        raise DicomError("PALETTE COLOR images are not supported")
    return _colour(raw), "colour to grey"


def _colour(raw: np.ndarray) -> np.ndarray:
    """RGB (pydicom has already turned YBR into RGB) to grey, as ``cv2.cvtColor`` does."""
    if raw.ndim != 3 or raw.shape[-1] != 3:
        raise DicomError(f"colour image of shape {raw.shape} is not RGB")
    if raw.dtype != np.uint8:
        raise DicomError(f"colour image with {raw.dtype} samples is not supported (8-bit only)")
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(raw), cv2.COLOR_RGB2GRAY)


CHUNK_PIXELS = 1 << 20
"""Pixels looked up or counted at a time: numpy widens an index array to 8-byte integers,
so a whole-image lookup or ``bincount`` would cost 8 bytes a pixel on its own."""


def _monochrome(raw: np.ndarray, ds: Any, invert: bool = False) -> tuple[np.ndarray, str]:
    """Modality LUT, then the VOI LUT, the window or a robust range, to 0..255 once.

    Every step is a function of the stored value alone, so for 8- and 16-bit data (all a
    radiograph uses) the steps run in float64 on a table of every possible stored value and
    the image is then looked up in the 8-bit table: the very numbers the per-pixel float64
    pipeline gives, at about 1 byte a pixel beyond the decoded array, where float64 copies of
    a 49-megapixel film cost gigabytes. The robust range's percentiles come from a histogram
    of the stored values, equal to ``np.percentile`` over the image. Wider data (rare) takes
    the per-pixel path.
    """
    if raw.ndim != 2:
        raise DicomError(f"grey image of shape {raw.shape} is not 2-D")
    if raw.dtype.kind not in "ui" or raw.dtype.itemsize > 2:
        grey, window = _map_values(raw, ds, None)
        return (255 - grey if invert else grey), window
    unsigned = np.dtype(f"u{raw.dtype.itemsize}")
    keys = raw.view(unsigned)
    table = np.arange(1 << (8 * raw.dtype.itemsize), dtype=unsigned).view(raw.dtype)
    counts: np.ndarray | None = None
    if not _has_voi_lut(ds) and not _has_window(ds):
        counts = _histogram(keys, len(table))
    lut, window = _map_values(table, ds, counts)
    if window == "none (8-bit)" and not invert and raw.dtype == np.uint8:
        return raw, window
    if invert:
        lut = 255 - lut
    return _lookup(lut, keys), window


def _histogram(keys: np.ndarray, size: int) -> np.ndarray:
    """How many pixels hold each stored value (``keys`` viewed unsigned), in chunks."""
    flat = keys.reshape(-1)
    counts = np.zeros(size, np.int64)
    for start in range(0, flat.size, CHUNK_PIXELS):
        counts += np.bincount(flat[start : start + CHUNK_PIXELS], minlength=size)
    return counts


def _lookup(lut: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``lut[keys]`` a band of rows at a time (the index widening stays one chunk's)."""
    out = np.empty(keys.shape, np.uint8)
    step = max(1, CHUNK_PIXELS // max(1, keys.shape[1]))
    for start in range(0, keys.shape[0], step):
        np.take(lut, keys[start : start + step], out=out[start : start + step])
    return out


def _map_values(
    values_in: np.ndarray, ds: Any, counts: np.ndarray | None
) -> tuple[np.ndarray, str]:
    """Stored values (the image, or a table of every stored value with ``counts`` pixels
    each) -> 8-bit grey and the manifest's description of the mapping."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    values = apply_modality_lut(values_in, ds)
    if _has_voi_lut(ds):
        lut = np.asarray(apply_voi_lut(values, ds), np.float64)
        lo, hi = _lut_range(ds)
        return scale_to_8bit(lut, lo, hi), "VOI LUT"
    if _has_window(ds):
        windowed = np.asarray(apply_voi_lut(values, ds, prefer_lut=False), np.float64)
        lo, hi = _window_range(values, ds)
        return scale_to_8bit(windowed, lo, hi), _window_text(ds)
    if _already_8bit(values_in, values, ds):
        return values_in.astype(np.uint8), "none (8-bit)"
    values = np.asarray(values, np.float64)
    if counts is None:
        lo, hi = np.percentile(values, ROBUST_PERCENTILES)
        if hi <= lo:
            lo, hi = float(np.min(values)), float(np.max(values))
    else:
        lo, hi = _weighted_percentiles(values, counts, ROBUST_PERCENTILES)
        if hi <= lo:
            present = values[counts > 0]
            lo, hi = float(np.min(present)), float(np.max(present))
    p0, p1 = ROBUST_PERCENTILES
    return scale_to_8bit(values, lo, hi), f"robust {p0:g}-{p1:g}%"


def _weighted_percentiles(
    values: np.ndarray, counts: np.ndarray, percents: tuple[float, ...]
) -> tuple[float, ...]:
    """``np.percentile`` (linear) of the image whose value ``values[i]`` occurs
    ``counts[i]`` times, without the image: the two order statistics either side of each
    virtual index are found in the sorted histogram, then interpolated as numpy does."""
    order = np.argsort(values[counts > 0], kind="stable")
    sorted_values = values[counts > 0][order]
    ends = np.cumsum(counts[counts > 0][order])  # ends[i]: order statistics below i+1
    n = int(ends[-1])
    out = []
    for q in percents:
        share = q / 100
        virtual = n * share + (1 + share * -1) - 1  # numpy's virtual index, term for term
        below = int(np.floor(virtual))
        gamma = virtual - below
        a, b = (float(sorted_values[np.searchsorted(ends, k, side="right")])
                for k in (below, min(below + 1, n - 1)))  # fmt: skip
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return tuple(out)


def _has_window(ds: Any) -> bool:
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _has_voi_lut(ds: Any) -> bool:
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _lut_range(ds: Any) -> tuple[float, float]:
    """A VOI LUT's own output range (its smallest and largest entries): descriptors often
    claim 16 bits for 12-bit tables."""
    data = _lut_entries(ds, ds.VOILUTSequence[0])
    return float(data.min()), float(data.max())


def _lut_entries(ds: Any, item: Any) -> np.ndarray:
    """A LUT's entries, as pydicom's ``apply_voi_lut`` reads them: LUTData may be US (a list
    of numbers) or OW (raw 16-bit words in the transfer syntax's byte order), both valid."""
    descriptor = [int(v) for v in item.LUTDescriptor]
    entries = descriptor[0] or 1 << 16
    dtype = np.uint8 if descriptor[2] == 8 else np.uint16
    element = item["LUTData"]
    if element.VR == "OW" or isinstance(element.value, (bytes, bytearray)):
        meta = getattr(ds, "file_meta", None)
        syntax = meta.get("TransferSyntaxUID") if meta is not None else None
        big = syntax is not None and syntax == _BIG_ENDIAN
        words = np.frombuffer(bytes(element.value), ">u2" if big else "<u2")
        if words.size < entries:
            raise DicomError("VOI LUT data is shorter than its descriptor says")
        return np.asarray(words[:entries], dtype)
    return np.asarray(element.value, np.float64).ravel()


def _window_range(values: np.ndarray, ds: Any) -> tuple[float, float]:
    """The output range pydicom's windowing maps into, found by windowing two values far
    below and above any window: it depends on bits, signedness and rescale, and asking is
    safer than repeating pydicom's rule."""
    from pydicom.pixels import apply_voi_lut

    probe = np.array([-1e300, 1e300], np.float64)
    with np.errstate(over="ignore"):
        lo, hi = np.asarray(apply_voi_lut(probe, ds, prefer_lut=False), np.float64)
    return float(lo), float(hi)


def _window_text(ds: Any) -> str:
    centre, width = ds.WindowCenter, ds.WindowWidth
    centre = centre[0] if _multi(centre) else centre
    width = width[0] if _multi(width) else width
    func = str(ds.get("VOILUTFunction") or "LINEAR").upper()
    return f"window {float(centre):g}/{float(width):g} {func}"


def _multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _already_8bit(raw: np.ndarray, values: np.ndarray, ds: Any) -> bool:
    """8-bit unsigned data with an identity Modality LUT: passed through, like a PNG."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    return (
        bits <= 8 and int(ds.get("PixelRepresentation") or 0) == 0 and np.array_equal(values, raw)
    )


def scale_to_8bit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``lo..hi`` linearly to 0..255, rounded (a 1e-13 error must not drop a grey level)."""
    if hi == lo:
        return np.zeros(values.shape, np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# -- metadata and messages ----------------------------------------------------------------


def _fields(ds: Any) -> dict[str, str]:
    """The non-identifying header fields of :data:`MANIFEST_FIELDS` (no window or notes)."""
    if ds is None:
        return {}
    try:
        meta = getattr(ds, "file_meta", None)
        uid = meta.get("TransferSyntaxUID") if meta is not None else None
        stored, allocated = ds.get("BitsStored"), ds.get("BitsAllocated")
        return {
            "dicom_sop_uid": _text(ds.get("SOPInstanceUID")),
            "dicom_modality": _text(ds.get("Modality")),
            "dicom_photometric": _text(ds.get("PhotometricInterpretation")),
            "dicom_bits": f"{stored}/{allocated}" if stored is not None else "",
            "dicom_transfer_syntax": _text(uid),
        }
    except Exception:  # a damaged header: the row says why it failed, without these
        return {}


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _redact(text: str, ds: Any) -> str:
    """``text`` with every patient identifier from the header replaced."""
    if ds is None:
        return text
    for keyword in _IDENTIFIERS:
        try:
            value = ds.get(keyword)
        except Exception:  # an unparsable value cannot be quoted either
            continue
        for part in value if _multi(value) else [value]:
            raw = _text(part)
            if len(raw) >= 2:
                text = text.replace(raw, "<redacted>")
    return text


def _describe(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


# -- one entry point for every input ------------------------------------------------------


class Loaded(NamedTuple):
    """A decoded input: the grey (or colour) image, the DICOM's facts (None for other
    files) and notes on how the pixels were obtained (a narrow 16-bit PNG windowed)."""

    image: np.ndarray
    info: DicomInfo | None
    notes: tuple[str, ...] = ()


def decode(data: bytes, max_pixels: int | None = None) -> Loaded:
    """Encoded bytes (PNG, JPEG or DICOM) -> the image, its DICOM facts and notes.

    PNG and JPEG go to the native decoder (OpenCV's answer); a 16-bit grey PNG that uses few
    of its bits is then windowed to its used range (:mod:`boneage.ingest.narrow16`). DICOM
    is recognised by its content, not its name.
    """
    from boneage import _native as native

    # One pixel limit for every format: the native decoder's default unless the caller says.
    limit = native.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if is_dicom(data):
        image = read_dicom(data, limit)
        return Loaded(image.pixels, image.info)
    grey = native.decode_gray(data, limit)  # checks the limits before any other decoding
    return _widened(grey, data[:26], lambda: data)


def _widened(grey: np.ndarray, head: bytes, data: Callable[[], bytes]) -> Loaded:
    """The decoder's ``grey``, or for a 16-bit grey PNG (``head``: its first bytes) that
    uses few of its bits, the file's ``data`` read as the N-bit data it holds, with a note.
    ``data`` is called only then: a path's file is read a second time for such files alone."""
    from boneage.ingest.narrow16 import is_sixteen_bit_grey_png, window_narrow

    widened = window_narrow(data()) if is_sixteen_bit_grey_png(head) else None
    if widened is not None:
        return Loaded(widened[0], None, (widened[1],))
    return Loaded(grey, None)


def decode_image(data: bytes, max_pixels: int | None = None) -> tuple[np.ndarray, DicomInfo | None]:
    """:func:`decode` without the notes."""
    loaded = decode(data, max_pixels)
    return loaded.image, loaded.info


def load(
    image: str | os.PathLike[str] | bytes | np.ndarray, max_pixels: int | None = None
) -> Loaded:
    """A path, encoded bytes or an array -> :class:`Loaded`.

    Paths to PNG/JPEG keep the native file reader (its messages name the file); a path whose
    content starts like DICOM, or a 16-bit grey PNG, is read (bounded) and decoded here.
    """
    from boneage import _native as native
    from boneage.ingest.sources import read_regular

    if isinstance(image, np.ndarray):
        return Loaded(image, None)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode(bytes(image), max_pixels)
    if file_is_dicom(image):
        try:
            return decode(read_regular(image), max_pixels)
        except DicomError as e:
            raise DicomError(f"{image}: {e}", e.fields) from None
    if max_pixels is None:
        grey = native.read_gray(image)
    else:
        grey = native.read_gray(image, max_pixels)
    with open(image, "rb") as f:
        head = f.read(26)
    return _widened(grey, head, lambda: read_regular(image))


def load_image(
    image: str | os.PathLike[str] | bytes | np.ndarray, max_pixels: int | None = None
) -> tuple[np.ndarray, DicomInfo | None]:
    """:func:`load` without the notes: (grey or colour array, DICOM facts or None)."""
    loaded = load(image, max_pixels)
    return loaded.image, loaded.info


def png_bytes(grey: np.ndarray) -> bytes:
    """A grey uint8 image as a fast lossless PNG, for code that takes encoded images (the
    bulk job's native pipeline): decoding it gives back exactly these pixels."""
    import cv2

    ok, buf = cv2.imencode(".png", grey, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise DicomError("could not re-encode the decoded image")
    return buf.tobytes()
