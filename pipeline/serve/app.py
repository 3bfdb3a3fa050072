"""The FastAPI application: ``POST /v1/remove``, ``GET /v1/models``, ``GET /healthz``, the page
at ``/`` and the generated OpenAPI docs at ``/docs``.

Models are loaded before the app is built (one model set per worker thread) and shared by all
requests. Each request's body is read first, with a byte cap and time bounds
(``pipeline.serve.upload``), and only then admitted through a bounded gate (503 +
``Retry-After`` when full), so a slow upload never holds a slot; decoding, inference and
encoding run in a bounded thread pool, never on the event loop. No endpoint takes a path from
the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import json
import logging
import queue
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline.outputs import FORMAT_NAMES, encode, get_format
from pipeline.serve.decode import decode_upload
from pipeline.serve.encode import ZIP_MEDIA_TYPE, layers_document, layers_zip
from pipeline.serve.errors import ApiError
from pipeline.serve.limits import AdmissionGate, ServeLimits
from pipeline.serve.upload import ClientGone, read_upload
from pipeline.types import KeepMode

log = logging.getLogger("layercut.serve")
STATIC_DIR = Path(__file__).resolve().parent / "static"

REMOVE_DESCRIPTION = """
Remove the background of one image.

**Input**: the image as a multipart field `file` (`multipart/form-data`) or as the raw request
body (any `Content-Type`, e.g. `image/jpeg`). JPEG (MPO too), PNG, WebP, TIFF, BMP, GIF; no other
format is decoded.

**Output** by query:
- default: the composite of the kept subjects, RGBA `image/png` (`format=webp`: `image/webp`);
- `background=<colour>|blur` (`white`, `#00ff00`, `rgb(0,255,0)`, or `blur`: the photo
  blurred): the kept subjects laid over it, without alpha (RGB `image/png` or `image/webp`);
- `mask=true` (or `format=mask`): the alpha alone as a grey 8-bit PNG (mode L);
- `debug=true` without `layers`: the debug view instead (every instance outlined, numbered and
  coloured by role), `image/png`;
- `layers=true`: `application/zip` with one full-size RGBA file per ranked layer
  (`01-person.png` …), `composite.<format>`, `layers.json` (each layer's rank, id, label, score,
  role, reason, box, features and `file`) and, with `debug=true`, `debug.png`;
- `format=json`: `application/json` — the `layers.json` document where each layer also carries
  `png` (base64 RGBA PNG **cropped** to the layer's matte) placed at `x0`, `y0` (size
  `crop_width` × `crop_height`) and `mask_png` (its instance mask at `mask_x0`, `mask_y0`: a
  shown layer's soft edge stays off the masks of hidden ones), plus `modes` (roles, reasons and
  on/off switches under every keep mode, so a client can switch modes without another
  request), `ambiguous`, and with
  `debug=true` a base64 `debug_png`. The web page at `/` uses this form and composes the enabled
  layers itself: alpha = 1 − Π(1 − aᵢ), colour = alpha-weighted mean of the layer colours.

Response headers: `X-Layercut-Keep`, `X-Layercut-Ambiguity`, `X-Layercut-Layers`,
`X-Layercut-Seconds`, `X-Layercut-Fallback` (`1` when the keep policy would have kept nothing and
the best candidate was kept instead: the JSON's `fallback` says why; `0` otherwise).

**Errors** are JSON `{"error": "...", "detail": "..."}`: 400 unreadable/truncated image or
missing `file`, 408 a body that stalls or trickles in (see the server's limits), 413 upload or
pixel count over the limit, 415 not an image in a decoded format, 422 bad query value, 503 queue
full (with `Retry-After`), 504 past the per-request timeout, 500 a pipeline failure.
"""

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_REMOVE_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/*": _BINARY,
            "application/octet-stream": _BINARY,
        },
    }
}
_REMOVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The composite, the ZIP of layers or the JSON document",
        "content": {
            "image/png": _BINARY,
            "image/webp": _BINARY,
            "application/zip": _BINARY,
            "application/json": {"schema": {"type": "object"}},
        },
    },
    **{
        code: {"description": text, "content": {"application/json": {"schema": _ERROR_SCHEMA}}}
        for code, text in (
            (400, "Unreadable image or missing file"),
            (408, "Request body too slow or stalled"),
            (413, "Upload or pixel count over the limit"),
            (415, "Not an image"),
            (422, "Bad query parameter"),
            (503, "Queue full; see Retry-After"),
            (504, "Timed out"),
        )
    },
}


# the ``format`` query: every output format of ``pipeline.outputs.FORMATS``, and ``json``
OutputFormat = enum.Enum(
    "OutputFormat", [(name, name) for name in (*FORMAT_NAMES, "json")], type=str
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One request's work, run on a worker thread."""

    data: bytes
    keep: KeepMode | None
    fmt: str
    layers: bool
    debug: bool
    background: Any = None  # pipeline.background.parse_background's colour or "blur"


@dataclasses.dataclass(frozen=True)
class Result:
    body: bytes
    media_type: str
    headers: dict[str, str]


class ServeState:
    """Worker pool, admission gate and the model sets the workers share (one per thread)."""

    def __init__(self, removers: Sequence[Any], limits: ServeLimits, tmp_dir: str | None):
        if len(removers) != limits.workers:
            raise ValueError(
                f"need one remover per worker: got {len(removers)} for {limits.workers} workers"
            )
        self.limits = limits
        self.tmp_dir = tmp_dir
        self.config = removers[0].config
        self.gate = AdmissionGate(limits.capacity)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.workers, thread_name_prefix="layercut-worker"
        )
        self._removers: queue.SimpleQueue = queue.SimpleQueue()
        for remover in removers:
            self._removers.put(remover)

    def process(self, job: Job) -> Result:
        """Decode, run and encode (on a worker thread). Raises ``ApiError`` for bad input."""
        start = time.perf_counter()
        loaded = decode_upload(job.data, self.limits.max_image_px, self.tmp_dir)
        remover = self._removers.get()  # never waits: one remover per worker thread
        try:
            layers = remover.run(loaded.rgb, keep=job.keep, input_alpha=loaded.alpha)
        finally:
            self._removers.put(remover)
        out = self.config.output
        options = {"png_compress_level": out.png_compress_level, "webp_quality": out.webp_quality}
        if job.fmt == "json":
            doc = layers_document(layers, job.debug, out.png_compress_level)
            body, media_type = json.dumps(doc).encode("utf-8"), "application/json"
        elif job.layers:
            body, media_type = layers_zip(layers, job.fmt, job.debug, **options), ZIP_MEDIA_TYPE
        elif job.debug:
            body = encode(layers.debug_view(), "png", **options)
            media_type = get_format("png").media_type
        else:
            body = encode(layers.composite(background=job.background), job.fmt, **options)
            media_type = get_format(job.fmt).media_type
        headers = {
            "X-Layercut-Keep": layers.keep.value,
            "X-Layercut-Ambiguity": f"{layers.ambiguity:.4f}",
            "X-Layercut-Layers": str(len(layers)),
            # 1: the keep policy would have kept nothing; the best candidate was kept instead
            "X-Layercut-Fallback": "1" if layers.fallback else "0",
            "X-Layercut-Seconds": f"{time.perf_counter() - start:.3f}",
        }
        return Result(body, media_type, headers)


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(
    removers: Sequence[Any], limits: ServeLimits | None = None, tmp_dir: str | None = None
) -> FastAPI:
    """Build the app around ready ``Remover``-like objects (``.config`` and
    ``.run(rgb, keep=, input_alpha=) -> Layers``), one per worker thread.

    ``tmp_dir``: where uploads are written while they are decoded (the system default if None).
    """
    limits = limits or ServeLimits(workers=len(removers))
    state = ServeState(removers, limits, tmp_dir)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="layercut",
        summary="Background removal that keeps the main subjects, as ranked RGBA layers.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.serve = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "bad request")
        return _error_response(ApiError(exc.status_code, phrase, str(exc.detail), exc.headers))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for item in exc.errors():
            where = ".".join(str(p) for p in item.get("loc", ()))
            parts.append(f"{where}: {item.get('msg', 'invalid')}")
        return _error_response(ApiError(422, "invalid parameter", "; ".join(parts)))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        first_line = (str(exc).splitlines() or [""])[0]
        detail = f"{type(exc).__name__}: {first_line}"
        return _error_response(ApiError(500, "internal error", detail))

    @app.get("/healthz", summary="Liveness and load")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "admitted": state.gate.in_use, "capacity": state.gate.capacity}

    @app.get("/v1/models", summary="Models, resolved configuration and limits")
    async def models() -> dict[str, Any]:
        cfg = state.config
        return {
            "detector": cfg.detect.weights,
            "segmenter": cfg.segment.model,
            "saliency": cfg.saliency.model,
            "ranker": cfg.rank.model,
            "refiner": cfg.refine.method,
            "device": getattr(removers[0], "device", cfg.runtime.device),
            "keep_modes": [mode.value for mode in KeepMode],
            "default_keep": cfg.select.keep,
            "formats": [fmt.value for fmt in OutputFormat],
            "limits": dataclasses.asdict(limits),
            "config": cfg.to_dict(),
        }

    @app.post(
        "/v1/remove",
        summary="Remove the background",
        description=REMOVE_DESCRIPTION,
        openapi_extra=_REMOVE_OPENAPI,
        responses=_REMOVE_RESPONSES,
        response_class=Response,
    )
    async def remove(
        request: Request,
        keep: Annotated[KeepMode | None, Query(description="main | all | interacting")] = None,
        fmt: Annotated[OutputFormat, Query(alias="format")] = OutputFormat["png"],
        layers: Annotated[bool, Query(description="ZIP of ranked layers + layers.json")] = False,
        debug: Annotated[bool, Query(description="debug view, or debug.png in ZIP/JSON")] = False,
        background: Annotated[
            str | None, Query(description="a colour ('white', '#00ff00') or blur; no alpha")
        ] = None,
        mask: Annotated[bool, Query(description="the alpha as a grey PNG (format=mask)")] = False,
    ) -> Response:
        fmt_name, back = _image_options(fmt.value, background, mask, layers or debug)
        try:  # the whole body first: a slow upload must not hold an inference slot
            data = await read_upload(request, limits)
        except ClientGone as exc:
            client = request.client.host if request.client else "?"
            log.info("client %s closed the connection during its upload (%s)", client, exc)
            return Response(status_code=400, headers={"Connection": "close"})
        if not state.gate.try_enter():
            raise ApiError(
                503,
                "server busy",
                f"{state.gate.capacity} requests are already running or queued; retry later",
                {"Retry-After": str(limits.retry_after_s)},
            )
        handed_to_worker = False
        try:
            job = Job(data, keep, fmt_name, layers, debug, back)
            future = state.executor.submit(state.process, job)
            # the slot is freed when the work ends (also when cancelled before it started)
            future.add_done_callback(lambda _: state.gate.leave())
            handed_to_worker = True
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), limits.timeout_s)
            except asyncio.TimeoutError:  # an alias of TimeoutError from 3.11
                raise _timeout(limits) from None
        finally:
            if not handed_to_worker:
                state.gate.leave()
        return Response(result.body, media_type=result.media_type, headers=result.headers)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:  # the page links it; other clients ask this path
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    return app


def _image_options(fmt: str, background: str | None, mask: bool, other: bool) -> tuple[str, Any]:
    """(format, parsed background) of the ``format``, ``background`` and ``mask`` queries; 422
    when they contradict each other or the background is not a colour or ``blur``."""
    from pipeline.background import parse_background

    if mask:
        if fmt not in ("png", "mask"):
            raise ApiError(422, "invalid parameter", f"mask=true writes a PNG mask, not {fmt}")
        fmt = "mask"
    if background is None:
        return fmt, None
    if fmt in ("mask", "json") or other:
        what = "a mask" if fmt == "mask" else "the layers, JSON or debug view"
        raise ApiError(422, "invalid parameter", f"background does not apply to {what}")
    try:  # never a path: a client names no file on the server
        return fmt, parse_background(background, files=False)
    except ValueError as exc:
        raise ApiError(422, "invalid parameter", f"background: {exc}") from None


def _timeout(limits: ServeLimits) -> ApiError:
    return ApiError(504, "timeout", f"no result within {limits.timeout_s:g} s; try a smaller image")
