"""A local web app: ``python -m boneage.serve [--host 127.0.0.1] [--port 8000] [--model M]``.

A clinician drops a radiograph (PNG, JPEG or DICOM) on the page at ``/``, chooses the sex,
optionally types the chronological age, and sees the estimate, the prepared image with the
crop and the Grad-CAM heatmap (:mod:`boneage.inference.explain`). Programs use the same thing
as JSON:

* ``POST /api/predict``: multipart form, fields ``file`` (the image), ``sex`` (``M`` or
  ``F``) and optional ``age_months``; the answer is :class:`PredictResponse`.
* ``GET /api/health``: the model and the limits, for a monitor or a start-up check.
* ``GET /docs``: the API, rendered from ``/openapi.json`` by a page shipped here.
  FastAPI's own Swagger page loads its scripts from a CDN; a hospital workstation is often
  offline, so it is replaced. Nothing the app serves loads anything from elsewhere, and
  the Content-Security-Policy header tells the browser to refuse it if something tried.

- :mod:`~boneage.serve.upload`: the upload streamed and parsed in memory within its limits
  (nothing touches the disk), the form's fields checked, and :class:`ApiError`, the refusal;
- :mod:`~boneage.serve.app`: :class:`Service` (the model behind a lock, one upload -> the
  JSON answer) and :func:`create_app` (routes, response models, headers, the static page);
- :mod:`~boneage.serve.cli`: :func:`build_parser` and :func:`main`, the command line
  (``__main__.py`` runs it).

The page, its script and style are package data in ``boneage/static``.
"""

from boneage.serve.app import (
    CSP,
    PREVIEW_SIDE,
    STATIC,
    Service,
    create_app,
    source_preview,
    years_and_months,
)
from boneage.serve.cli import build_parser, main
from boneage.serve.upload import (
    DEFAULT_MAX_UPLOAD_MB,
    FIELD_LIMIT,
    FORM_OVERHEAD,
    MAX_AGE_MONTHS,
    ApiError,
    Form,
    parse_age,
    parse_api_sex,
    read_form,
)

__all__ = [
    "CSP",
    "DEFAULT_MAX_UPLOAD_MB",
    "FIELD_LIMIT",
    "FORM_OVERHEAD",
    "MAX_AGE_MONTHS",
    "PREVIEW_SIDE",
    "STATIC",
    "ApiError",
    "Form",
    "Service",
    "build_parser",
    "create_app",
    "main",
    "parse_age",
    "parse_api_sex",
    "read_form",
    "source_preview",
    "years_and_months",
]
