"""The upload parser: a ``multipart/form-data`` body -> a :class:`Form`, and its fields checked.

Why the upload is parsed here rather than by FastAPI's ``UploadFile``: Starlette spools an
upload over 1 MB to a temporary file and reads the whole body before the handler runs. The
body is streamed instead, counted as it arrives (a request over ``--max-upload-mb`` is
refused at that point, with 413) and parsed in memory with python-multipart, the parser
Starlette itself uses. So nothing uploaded ever touches the disk, and nothing is kept after
the response.

It is a module of its own because it is the app's one piece of untrusted-input handling, with
its limits in one place, and it needs neither FastAPI nor the model: it reads any object with
``headers`` and an async ``stream()``. :class:`ApiError`, the refusal every layer of the app
raises, lives here, at the bottom of the package, so that :mod:`~boneage.serve.app` imports
from this module and never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from boneage.settings import MAX_AGE_MONTHS, parse_age_months

__all__ = [
    "DEFAULT_MAX_UPLOAD_MB",
    "FIELD_LIMIT",
    "FORM_OVERHEAD",
    "MAX_AGE_MONTHS",
    "ApiError",
    "Form",
    "parse_age",
    "parse_api_sex",
    "read_form",
]

DEFAULT_MAX_UPLOAD_MB = 50
"""Uploads over this many megabytes (MiB) are refused: a full-resolution hand film is 2-20."""

FIELD_LIMIT = 1024
"""The most bytes a text field (``sex``, ``age_months``) may have."""

FORM_OVERHEAD = 64 * 1024
"""Room for the multipart framing and text fields on top of the file itself."""


class ApiError(Exception):
    """A request the app refuses: HTTP ``status``, a stable ``code`` and a readable message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- multipart


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)
    limit: int = FIELD_LIMIT


@dataclass
class Form:
    """A parsed multipart form: text fields and file contents, by field name (last wins)."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)


async def read_form(request: Any, max_upload: int) -> Form:
    """Streams and parses a ``multipart/form-data`` body in memory, within the limits.

    The ``file`` part may hold ``max_upload`` bytes, text fields :data:`FIELD_LIMIT`, the
    whole body ``max_upload`` + :data:`FORM_OVERHEAD`; the first byte over any of them ends
    the read with a 413. A declared Content-Length over the limit is refused before reading.
    """
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import MultipartParser, parse_options_header

    mime, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise ApiError(
            415,
            "not_multipart",
            "send the image as multipart/form-data with fields file, sex and age_months",
        )
    body_limit = max_upload + FORM_OVERHEAD
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > body_limit:
        raise ApiError(413, "too_large", _too_large(max_upload))

    form = Form()
    parts: list[_Part] = []
    header = {"field": bytearray(), "value": bytearray()}

    def on_part_begin() -> None:
        parts.append(_Part())

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        name = bytes(header["field"]).decode("latin-1").strip().lower()
        parts[-1].headers[name] = bytes(header["value"]).decode("latin-1")
        header["field"].clear()
        header["value"].clear()

    def on_headers_finished() -> None:
        part = parts[-1]
        _, disposition = parse_options_header(part.headers.get("content-disposition", ""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = disposition.get(b"filename")
        part.filename = None if raw_filename is None else raw_filename.decode("utf-8", "replace")
        part.limit = max_upload if part.filename is not None or part.name == "file" else FIELD_LIMIT

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        if len(part.data) + (end - start) > part.limit:
            if part.limit == max_upload:
                raise ApiError(413, "too_large", _too_large(max_upload))
            raise ApiError(
                413, "field_too_large", f"field {part.name!r} is over {FIELD_LIMIT} bytes"
            )
        part.data += data[start:end]

    def on_part_end() -> None:
        part = parts[-1]
        if part.filename is not None or part.name == "file":
            form.files[part.name] = bytes(part.data)
        else:
            form.fields[part.name] = bytes(part.data).decode("utf-8", "replace")
        part.data = bytearray()  # the form holds the one copy

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    parser = MultipartParser(boundary, callbacks)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise ApiError(413, "too_large", _too_large(max_upload))
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as e:
        raise ApiError(400, "bad_form", f"the multipart body could not be parsed ({e})") from None
    return form


def _too_large(max_upload: int) -> str:
    return f"the upload is over the limit of {max_upload / 2**20:g} MB"


# --------------------------------------------------------------------------- the fields


def parse_api_sex(value: str | None) -> int | None:
    """1 for ``M``, 0 for ``F`` (case and spaces ignored), None when absent or blank (a
    DICOM's ``PatientSex`` may then give it); anything else is a 422.

    Stricter than :func:`boneage.settings.parse_sex` on purpose: an API contract with two
    values leaves no room for a ``"0"`` that one client means as male.
    """
    if value is None or not value.strip():
        return None
    key = value.strip().upper()
    if key not in ("M", "F"):
        raise ApiError(422, "bad_sex", f"sex must be M or F, got {value[:20]!r}")
    return 1 if key == "M" else 0


def parse_flag(value: str | None, name: str) -> bool:
    """An optional yes/no form field: absent, blank, ``false``/``0``/``no`` is False,
    ``true``/``1``/``yes``/``on`` (a checkbox) is True; anything else is a 422."""
    key = (value or "").strip().lower()
    if key in ("", "false", "0", "no", "off"):
        return False
    if key in ("true", "1", "yes", "on"):
        return True
    shown = (value or "")[:20]
    raise ApiError(422, f"bad_{name}", f"{name} must be true or false, got {shown!r}")


def parse_age(value: str | None) -> float | None:
    """The optional chronological age in months: blank or absent is None, else a number in
    0..:data:`MAX_AGE_MONTHS` (:func:`boneage.settings.parse_age_months`, the one rule), or a
    422 with its reason."""
    try:
        return parse_age_months(value)
    except ValueError as e:
        raise ApiError(422, "bad_age", str(e)) from None
