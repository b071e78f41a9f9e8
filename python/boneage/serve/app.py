"""The app: :func:`create_app` builds the FastAPI application around a loaded model.

:class:`Service` holds the model and turns one upload into the JSON answer (the estimate, the
crop, the Grad-CAM heatmap and the pictures, built by :func:`years_and_months`,
:func:`source_preview` and ``_b64png``); :func:`create_app` adds the routes, the response
models that document ``/openapi.json``, the error handlers, the security headers and the
static page (``boneage/static``, package data read once at start-up).

The model is loaded once, at start-up, and warmed up on a blank image so that the first
clinician does not wait for graph tracing. Model calls are serialised with a lock: Keras
models and the MediaPipe detector are not safe to call from several threads at once, and a
bone-age estimate takes a fraction of a second, so a queue costs little. The request
handling around them (reading, parsing, encoding the pictures) runs concurrently.

Separate from the upload parser (:mod:`~boneage.serve.upload`), which it calls, and from the
command line (:mod:`~boneage.serve.cli`), which calls it: tests and benchmarks build the app
here with a model of their own, no socket and no argparse.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations
# (``request: Request``) at run time, and Request is imported inside create_app.
import base64
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

from boneage.inference.estimate import years_and_months
from boneage.inference.reference import REFERENCE
from boneage.serve.upload import (
    DEFAULT_MAX_UPLOAD_MB,
    MAX_AGE_MONTHS,
    ApiError,
    parse_age,
    parse_api_sex,
    parse_flag,
    read_form,
)

__all__ = [
    "CSP",
    "PREVIEW_SIDE",
    "STATIC",
    "Service",
    "create_app",
    "source_preview",
    "years_and_months",
]

PREVIEW_SIDE = 480
"""The longer side of the source preview the page shows with the crop box."""

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)

STATIC = ("index.html", "app.js", "app.css", "docs.html", "docs.js", "favicon.svg")
"""The files in ``boneage/static`` the app serves (a fixed list: no path is ever joined)."""


# --------------------------------------------------------------------------- the work


def _b64png(image: np.ndarray) -> str:
    from boneage.inference.explain import png_bytes

    return base64.b64encode(png_bytes(image)).decode("ascii")


def source_preview(image: np.ndarray, box: Sequence[int] | None) -> np.ndarray:
    """RGB copy of the decoded input, longer side :data:`PREVIEW_SIDE`, the crop box in
    orange when a crop was used (``box`` None: the model took the whole film)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, PREVIEW_SIDE / max(h, w))
    small = cv2.resize(
        grey, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    rgb = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    if box is None:
        return rgb
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    thick = max(2, round(max(rgb.shape[:2]) / 160))
    cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), (255, 140, 0), thick)
    return rgb


class Service:
    """The loaded model and the lock around it; turns one upload into the JSON answer."""

    def __init__(self, predictor: Any, max_upload: int, max_pixels: int) -> None:
        self.predictor = predictor
        self.max_upload = int(max_upload)
        self.max_pixels = int(max_pixels)
        self.lock = threading.Lock()

    def warm_up(self) -> None:
        """One explanation of a blank image: traces the graphs before the first request."""
        side = int(self.predictor.meta.preprocessing.image_size)
        with self.lock:
            # A blank square is no film: forced past the gate, the graphs are what counts.
            self.predictor.explanation(np.full((side, side), 128, np.uint8), 0, force=True)

    def model_info(self) -> dict[str, Any]:
        meta = self.predictor.meta
        return {
            "name": meta.model_name or str(self.predictor.model.name),
            "file": self.predictor.path.name,
            "preprocessing": meta.preprocessing.to_dict(),
            "tta": int(self.predictor.tta),
            "uncertainty": bool(meta.uncertainty),
            "trained_on": str(meta.extra.get("trained_on") or ""),
            "validation": meta.extra.get("validation"),
            "interval_90": meta.extra.get("interval"),
            "input_gate": self.predictor.gate is not None,
            "reference": REFERENCE.name,
            "reference_citation": REFERENCE.citation,
        }

    def analyse(
        self, data: bytes, male: int | None, age: float | None, force: bool = False
    ) -> dict[str, Any]:
        """Estimate and explanation for one upload; bad content is an :class:`ApiError`.

        ``male`` None: the DICOM's ``PatientSex`` decides (the one sex rule); a file without
        one is a 422 naming the missing field. The answer is :meth:`Estimate.to_dict` (the
        schema ``predict --json`` prints) plus the pictures the page shows. An image the
        input gate refuses is a 422 ``not_a_hand_radiograph`` with the reason, unless
        ``force``."""
        from boneage.inference import NoSexError, NotAHandRadiograph

        started = time.perf_counter()
        if not data:
            raise ApiError(422, "empty_file", "the uploaded file is empty")
        try:
            with self.lock:
                ex = self.predictor.explanation(
                    data, male, age_months=age, max_pixels=self.max_pixels, force=force
                )
        except NoSexError:
            raise ApiError(
                422,
                "missing_field",
                "field 'sex' is required (M or F): the file has no DICOM PatientSex",
            ) from None
        except NotAHandRadiograph as e:
            raise ApiError(422, "not_a_hand_radiograph", str(e)) from None
        except (OSError, ValueError) as e:
            message = str(e)
            if "pixel" in message and "limit" in message:
                raise ApiError(413, "too_many_pixels", message) from None
            raise ApiError(422, "bad_file", f"not a usable radiograph: {message}") from None
        from boneage.inference.explain import enlarge, overlay

        est = ex.estimate
        h, w = ex.image.shape[:2]
        return {
            **est.to_dict(),
            "image_size": {"width": int(w), "height": int(h)},
            "model": self.model_info(),
            "explanation": {
                "method": "grad-cam",
                "layer": ex.layer,
                "baseline_months": ex.baseline_months,
                "direction": "raised" if ex.direction > 0 else "lowered",
            },
            "heatmap_png": _b64png(overlay(ex.prepared, ex.heatmap)),
            "prepared_png": _b64png(enlarge(ex.prepared)),
            "source_png": _b64png(
                source_preview(ex.image, None if est.localiser == "none" else est.box)
            ),
            "elapsed_ms": (time.perf_counter() - started) * 1e3,
        }


# --------------------------------------------------------------------------- the app


def _response_models() -> dict[str, Any]:
    """Pydantic models of the JSON answers: they document /openapi.json and check replies."""
    from pydantic import BaseModel, Field

    class YearsMonths(BaseModel):
        years: int
        months: int = Field(ge=0, le=11)

    class Box(BaseModel):
        x0: int
        y0: int
        x1: int
        y1: int

    class Size(BaseModel):
        width: int
        height: int

    class ModelInfo(BaseModel):
        name: str
        file: str
        preprocessing: dict[str, Any]
        tta: int
        uncertainty: bool
        trained_on: str = Field(description="the data the model learned from")
        validation: dict[str, Any] | None = Field(
            description="its error on the validation films (n, mae, bias), overall and by "
            "band of true age: the limits shown beside each estimate"
        )
        interval_90: dict[str, Any] | None = Field(
            description="the 90 % interval's half-widths by band of estimated age"
        )
        input_gate: bool = Field(description="a feature gate was fitted for this model")
        reference: str
        reference_citation: str

    class ExplanationInfo(BaseModel):
        method: str
        layer: str
        baseline_months: float = Field(description="the model's output with no image evidence")
        direction: str = Field(description="whether the highlighted regions raised or lowered it")

    class PredictResponse(BaseModel):
        source: str
        sex: str
        sex_source: str = Field(description="given, labels, DICOM PatientSex or default")
        bone_age_months: float
        bone_age: YearsMonths = Field(description="rounded to the month")
        bone_age_years: float
        interval_90_months: list[float] | None = Field(
            description="[lo, hi]: where the true bone age lies for 90 % of such films "
            "(split-conformal, fitted on validation)"
        )
        sigma_months: float | None = Field(description="uncertainty, when the model has one")
        age_months: float | None = Field(description="the chronological age used")
        age_source: str = Field(description="given, or which DICOM attributes gave it")
        delta_months: float | None = Field(description="bone age minus chronological age")
        sds: float | None = Field(description="delta over the reference SD for age and sex")
        reference_sd_months: float | None
        within_normal_range: bool | None = Field(description="|SDS| <= 2")
        age_within_interval: bool | None = Field(
            description="the age lies inside the 90 % interval: the delta is within the "
            "model's error"
        )
        reference: str | None
        orientation: str = Field(description="what was done to bring the film upright")
        orientation_confidence: float | None
        crop_box: Box = Field(description="in the upright film's pixels (as source_png)")
        image_size: Size
        localiser: str
        model: ModelInfo
        explanation: ExplanationInfo
        notes: list[str]
        dicom: dict[str, str] | None
        heatmap_png: str = Field(description="base64 PNG: Grad-CAM over the prepared image")
        prepared_png: str = Field(description="base64 PNG: the model's input, enlarged")
        source_png: str = Field(description="base64 PNG: the upload, reduced, crop box drawn")
        elapsed_ms: float

    class Health(BaseModel):
        status: str
        version: str
        backend: str
        model: ModelInfo
        max_upload_bytes: int
        max_pixels: int

    class ErrorResponse(BaseModel):
        detail: str
        code: str

    return {"PredictResponse": PredictResponse, "Health": Health, "ErrorResponse": ErrorResponse}


_FORM_SCHEMA = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "the radiograph: PNG, JPEG or DICOM",
                    },
                    "sex": {
                        "type": "string",
                        "enum": ["M", "F"],
                        "description": "required unless the file is a DICOM with PatientSex; "
                        "when both are given this one is used and a disagreement is noted",
                    },
                    "age_months": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_AGE_MONTHS,
                        "description": "chronological age in months (optional)",
                    },
                    "force": {
                        "type": "boolean",
                        "description": "estimate an image the input gate refuses as not a "
                        "hand radiograph (a note says so); default false",
                    },
                },
            }
        }
    },
}


def create_app(
    predictor: Any = None,
    *,
    model: str | None = None,
    tta: int | None = None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: int | None = None,
    warm_up: bool = True,
) -> Any:
    """The FastAPI app, with the model loaded now (``predictor``, else ``model``/``tta``).

    ``max_pixels``: decoded images larger than this are refused; default the decoder's own
    limit (``boneage._native.DEFAULT_MAX_PIXELS``), the one ``predict`` applies.
    """
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from boneage import __version__
    from boneage import _native as native

    if predictor is None:
        from boneage.inference import Predictor

        predictor = Predictor(model, tta=tta)
    max_upload = int(max_upload_mb * 2**20)
    service = Service(
        predictor, max_upload, native.DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    )
    if warm_up:
        service.warm_up()
    models = _response_models()
    folder = resources.files("boneage").joinpath("static")
    static = {name: folder.joinpath(name).read_bytes() for name in STATIC}
    media = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript",
        ".css": "text/css",
        ".svg": "image/svg+xml",
    }

    app = FastAPI(
        title="boneage",
        version=__version__,
        description="Bone age from a hand radiograph, with a Grad-CAM explanation. "
        "Research software, not a medical device.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": models["ErrorResponse"]} for code in (400, 413, 415, 422)
    }

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"detail": str(exc.detail), "code": code},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"  # answers hold patient images
        return response

    def page(name: str) -> Response:
        suffix = name[name.rfind(".") :]
        return Response(static[name], media_type=media[suffix])

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return page("index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return page("favicon.svg")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return page("docs.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        if name not in static:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return page(name)

    @app.get("/api/health", response_model=models["Health"], summary="Is the model loaded?")
    async def health() -> dict[str, Any]:
        import keras

        return {
            "status": "ok",
            "version": __version__,
            "backend": keras.backend.backend(),
            "model": service.model_info(),
            "max_upload_bytes": service.max_upload,
            "max_pixels": service.max_pixels,
        }

    @app.post(
        "/api/predict",
        response_model=models["PredictResponse"],
        responses=errors,
        openapi_extra={"requestBody": _FORM_SCHEMA},
        summary="Bone age, uncertainty, crop and Grad-CAM heatmap for one radiograph",
    )
    async def predict(request: Request) -> dict[str, Any]:
        form = await read_form(request, service.max_upload)
        if "file" not in form.files:
            raise ApiError(422, "missing_field", "field 'file' is required: the radiograph")
        male = parse_api_sex(form.fields.get("sex"))
        age = parse_age(form.fields.get("age_months"))
        force = parse_flag(form.fields.get("force"), "force")
        data = form.files.pop("file")
        return await run_in_threadpool(service.analyse, data, male, age, force)

    return app
