"""The web service behind ``aedr serve``: an upload page and a JSON API over ``Attributor``.

- One ``Attributor`` serves every request. Its autoencoders load once, on the first image, and
  all work runs on one worker thread, so concurrent requests queue for the model instead of
  loading it twice or racing on it.
- Uploads are held in memory up to the size limit and only ever written, under a random name, to
  a temporary folder the service creates and removes; the sender's file name is a display label.
- Types are checked by content (what Pillow recognises), never by extension. A bad upload gets a
  4xx with the reason: 413 too large or too many pixels, 415 not an allowed image type, 422 an
  image that cannot be decoded or scored. The service goes on serving.
- Results are private to the request that made them: each gets a random id (``/api/results/{id}``
  reads it back, ``/results/{id}`` shows it to a person, ``/api/records`` downloads case records
  as JSON or CSV); a repeated image reuses its measurements from the score store, never another
  upload's result or file name. Results live in the store, so they outlive a restart.
- Each result is a case record: the file's facts (SHA-256, size, dimensions, format, JPEG quality,
  EXIF, PNG text, ICC profile, C2PA manifest; ``aedr.measure.fileinfo``), the upload time, the tool
  version, each candidate's autoencoder identity and calibration digest, and every number.
- Guarded like other local tools' APIs: the Host header must name this server (loopback names, or
  ``allowed_hosts``), which defeats DNS rebinding; a state-changing request that a browser sends
  from another origin is refused (``allowed_origins`` lists exceptions); binding beyond loopback
  requires a token (``$AEDR_TOKEN``), checked on every API call as ``Authorization: Bearer TOKEN``.
  Every answer carries a content security policy that allows only the page's own script and
  style (by hash) and this origin, and forbids framing; ``/docs`` is rendered here, with no
  third-party script.
- Bounded under hostile clients (``Limits``): at most ``max_pending`` uploads are received or
  waiting for the model at once (more get 503 at once, before their bodies are read); request
  headers must arrive within ``header_timeout`` seconds and an upload's body within
  ``body_timeout``; file metadata is capped (``aedr.measure.fileinfo``); results expire after
  ``keep_days``. SIGTERM stops the service within ``shutdown_timeout`` seconds even while an
  image is being scored (that result is dropped), and removes the upload folder.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import html
import io
import os
import queue
import re
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from starlette.formparsers import MultiPartException, MultiPartParser

from aedr import __version__
from aedr.attributor import Attributor
from aedr.decide.attribution import Attribution
from aedr.limits import Limits
from aedr.measure.fileinfo import file_facts
from aedr.seals import SigningKey, seal

if TYPE_CHECKING:
    from aedr.measure.store import ScoreStore

TOKEN_ENV = "AEDR_TOKEN"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "TIFF": "tif",
                   "BMP": "bmp"}  # fmt: skip
RESULT_ID = re.compile(r"[0-9a-f]{32}")
MAX_RECORD_IDS = 256
"""Most results one ``/api/records`` request may name."""
RECORD_FIELDS = (
    "result_id", "filename", "sha256", "bytes", "width", "height", "format", "jpeg_quality",
    "uploaded", "tool", "verdict", "verdict_group", "candidates", "region_share", "confidence",
    "caution",
    "c2pa", "model", "autoencoder", "calibration_digest", "calibration_n", "calibration_alpha",
    "statistic", "signal", "threshold", "belongs", "p_value", "margin", "false_acceptance",
    "false_attribution", "explanation", "degradation", "threshold_quality", "error",
    "record_digest",
)  # fmt: skip
"""Columns of a CSV case record: one row per (image, candidate model)."""
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" '
    'rx="3" fill="#1d4f9c"/><path d="M4 12 8 3l4 9M5.6 9h4.8" stroke="#fff" stroke-width="1.8" '
    'fill="none"/></svg>'
)
UPLOAD_BODY = {  # the OpenAPI description of what /api/attribute parses itself
    "required": True,
    "content": {"multipart/form-data": {"schema": {
        "type": "object",
        "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
    }}},
}  # fmt: skip


@dataclass(frozen=True)
class Access:
    """Who may reach the service: the Host names it answers to and the foreign origins allowed
    to change state; ``token`` is required on every API call when set."""

    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")
    allowed_origins: tuple[str, ...] = ()
    token: str | None = None

    @classmethod
    def for_bind(
        cls, host: str, token: str | None, hosts: Sequence[str] = (), origins: Sequence[str] = ()
    ) -> Access:
        """Loopback binds answer to loopback names (plus ``hosts``); other binds, which need a
        token, to ``hosts`` when given, else to any name."""
        names = (*LOOPBACK_HOSTS, *hosts) if not needs_token(host) else (tuple(hosts) or ("*",))
        return cls(tuple(dict.fromkeys(names)), tuple(o.rstrip("/") for o in origins), token)

    def host_allowed(self, host_header: str) -> bool:
        if "*" in self.allowed_hosts:
            return True
        try:
            name = urlsplit(f"//{host_header}").hostname
        except ValueError:
            return False
        return name is not None and name in self.allowed_hosts

    def origin_allowed(self, origin: str | None, host_header: str, scheme: str) -> bool:
        """Same origin (the request's own Host), an allowed origin, or no Origin at all (a
        non-browser client; browsers send one with every cross-origin POST)."""
        if origin is None:
            return True
        return origin in (f"{scheme}://{host_header}", *self.allowed_origins)


class UploadError(Exception):
    """A refused upload: ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def needs_token(host: str) -> bool:
    """Whether binding ``host`` exposes the service beyond this machine."""
    return host not in LOOPBACK_HOSTS


def display_name(filename: str | None) -> str:
    """The sender's file name as a label: base name only, printable, at most 200 characters."""
    name = Path((filename or "upload").replace("\\", "/")).name
    return "".join(c if c.isprintable() else "?" for c in name)[:200] or "upload"


def image_format(data: bytes, max_pixels: int) -> str:
    """The allowed format of ``data``, judged by content; refuses before decoding any pixels."""
    if not data:
        raise UploadError(422, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            file_format, (width, height) = image.format, image.size
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"image declares too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise UploadError(
            415,
            f"not an image of an allowed type ({', '.join(ALLOWED_FORMATS)}), judged by content",
        ) from None
    if file_format not in ALLOWED_FORMATS:
        raise UploadError(415, f"{file_format} images are not accepted; send one of "
                               f"{', '.join(ALLOWED_FORMATS)}")  # fmt: skip
    if width * height > max_pixels:
        raise UploadError(
            413, f"image declares {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels}"
        )  # fmt: skip
    return file_format


class Worker:
    """One daemon thread running queued calls in order.

    A daemon, unlike ``ThreadPoolExecutor``'s threads, does not hold the process at exit: a
    shutdown need not wait for the image being scored.
    """

    def __init__(self, name: str):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = threading.Event()
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        self._jobs.put((future, function, args))
        return future

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args = job
            if not future.set_running_or_notify_cancel():
                continue
            self._busy.set()
            try:
                future.set_result(function(*args))
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                self._busy.clear()

    def stop(self) -> bool:
        """Cancel the queued calls and end the thread after the current one; whether a call was
        still running."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job[0].cancel()
        self._jobs.put(None)
        return self._busy.is_set()


class AttributionService:
    """The attributor, its store and its upload folder, with every call on one worker thread."""

    def __init__(
        self, attributor: Attributor, limits: Limits | None = None,
        signing_key: SigningKey | None = None,
    ):  # fmt: skip
        self.attributor, self.limits = attributor, limits or Limits()
        self.signing_key = signing_key  # signs each result's seal (aedr.seals), when given
        self.store: ScoreStore | None = attributor.scorer.store  # scores and results, one file
        self.calibrations = list(attributor.calibrations.values())
        self.identities = self._identities()  # fixed for the service's life: part of each record
        self._worker = Worker("aedr-serve")
        self.upload_folder = Path(tempfile.mkdtemp(prefix="aedr-serve-"))
        self.pending = 0  # uploads being received or waiting for the worker (event loop only)
        self.abandoned = False  # closed while a call was running (see close)
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if self.store is not None:
            self.store.expire_results(self.limits.keep_days)

    async def run(self, function, *args):
        """Queue ``function`` on the worker thread and await its result; once the service is
        stopping, a 503 instead (the call is dropped, or abandoned if it is running)."""
        if self._loop is not asyncio.get_running_loop():  # the event belongs to one loop
            self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        assert self._stopping is not None
        result = asyncio.wrap_future(self._worker.submit(function, *args))
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait((result, stopping), return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not result.done():
            result.cancel()
            raise HTTPException(503, "the service is stopping: this upload was not scored")
        return result.result()

    def stop(self) -> None:
        """Answer the requests waiting for the worker with 503 now (from a signal handler)."""
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    def close(self) -> None:
        """Stop at once: queued calls are cancelled, a call under way is abandoned (its daemon
        thread ends with the process: ``abandoned``; the store is crash-safe), the upload
        folder removed."""
        self.abandoned = self._worker.stop()
        shutil.rmtree(self.upload_folder, ignore_errors=True)
        if self.store is not None and not self.abandoned:
            self.store.close()

    def attribute(self, filename: str, data: bytes) -> dict[str, Any]:
        """The attribution of one uploaded image; raises ``UploadError`` for a bad upload.

        The result gets a random id: it is this upload's alone (another upload of the same bytes
        reuses the measurements from the store, not this result or its file name).
        """
        result_id = secrets.token_hex(16)
        extension = ALLOWED_FORMATS[image_format(data, self.limits.max_pixels)]
        facts = file_facts(data)  # opens: image_format has just read its header
        path = self.upload_folder / f"{uuid.uuid4().hex}.{extension}"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stream:
            stream.write(data)
        try:
            attribution = self.attributor.attribute_file(path)
        finally:
            path.unlink(missing_ok=True)
        if attribution.error:
            raise UploadError(422, attribution.error)
        rows = [{**row, "path": filename} for row in attribution.rows()]
        result = {
            "id": result_id, "filename": filename, "verdict": attribution.verdict,
            "verdict_group": attribution.verdict_group, "candidates": list(attribution.candidates),
            "confidence": attribution.confidence, "caution": attribution.caution, "rows": rows,
            "region_share": attribution.region_share, "localization": _localization(attribution),
            "file": facts.as_dict(),
            "uploaded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tool": f"aedr {__version__}", "calibrations": self.identities,
            "false_attribution": None
            if attribution.false_attribution is None
            else attribution.false_attribution.as_dict(),
            "explanation": attribution.explanation,
        }  # fmt: skip
        result = seal(result, self.signing_key)  # `aedr verify` checks it
        if self.store is not None:
            self.store.expire_results(self.limits.keep_days)
            self.store.put_result(result_id, result)
        return result

    def _identities(self) -> list[dict[str, Any]]:
        """What each candidate's decision rests on: its autoencoder and its calibration."""
        return [
            {
                "model": c.model, "autoencoder": c.measurement_provenance.identity,
                "calibration_digest": c.digest or c.content_digest(), "n": c.n,
                "alpha": c.alpha, "statistic": c.statistic, "threshold": c.threshold,
                "negatives": {"n": c.negatives["n"], "sources": c.negatives["sources"],
                              "false_acceptance": c.false_acceptance} if c.negatives else None,
            }
            for c in self.calibrations
        ]  # fmt: skip

    def get_result(self, result_id: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        return self.store.get_result(result_id, self.limits.keep_days)

    def models(self) -> list[dict[str, Any]]:
        """Each calibrated model with its threshold and calibration signals (for the page's plot),
        and the signals of its JPEG thresholds by quality."""
        return [
            {
                **self.identities[i], "group": self.attributor.scorer.models[i].group,
                "parameters": c.parameters, "signals": c.signals, "provenance": c.provenance,
                "jpeg_signals": {str(q): c.at_jpeg_quality(q).signals for q in c.jpeg_qualities},
            }
            for i, c in enumerate(self.calibrations)
        ]  # fmt: skip


def record_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A result's CSV case record: one row per candidate model, ``RECORD_FIELDS`` in order."""
    file, c2pa = result.get("file", {}), result.get("file", {}).get("c2pa", {})
    calibrations = {c["model"]: c for c in result.get("calibrations", [])}
    provenance = c2pa.get("status", "")
    if c2pa.get("generated"):
        provenance = "declares generation by " + (", ".join(c2pa["generators"]) or "a generator")
    rows = []
    for row in result["rows"]:
        calibration = calibrations.get(row["model"], {})
        values = {
            **{k: file.get(k) for k in ("sha256", "bytes", "width", "height", "format",
                                        "jpeg_quality")},
            **row,  # the attribution row: verdict, candidates, model and every number
            "result_id": result["id"], "filename": result["filename"],
            "uploaded": result.get("uploaded"), "tool": result.get("tool"), "c2pa": provenance,
            "autoencoder": calibration.get("autoencoder"),
            "calibration_digest": calibration.get("calibration_digest"),
            "calibration_n": calibration.get("n"), "calibration_alpha": calibration.get("alpha"),
            "record_digest": result.get("seal", {}).get("digest"),
        }  # fmt: skip
        rows.append({k: values.get(k) for k in RECORD_FIELDS})
    return rows


def records_csv(results: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, RECORD_FIELDS, lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerows(
            {k: "" if v is None else v for k, v in row.items()} for row in record_rows(result)
        )
    return buffer.getvalue()


def _localization(attribution: Attribution) -> dict[str, Any] | None:
    """For a ``partial`` verdict: the named model's map as a PNG overlay, and its regions."""
    if attribution.local_map is None or attribution.local_threshold is None:
        return None
    from aedr.decide.report import map_overlay_png

    height, width = attribution.local_map.shape
    overlay = map_overlay_png(attribution.local_map, attribution.local_threshold)
    return {
        "model": attribution.candidates[0], "width": width, "height": height,
        "threshold": attribution.local_threshold, "regions": [r.as_dict() for r in attribution.regions],
        "overlay": "data:image/png;base64," + base64.b64encode(overlay).decode(),
    }  # fmt: skip


class _BodyTooLarge(Exception):
    pass


class _BodyTooSlow(Exception):
    pass


async def _capped(
    stream: AsyncIterator[bytes], limit: int, seconds: float
) -> AsyncGenerator[bytes, None]:
    """The body's chunks, refused past ``limit`` bytes or ``seconds`` after the first read."""
    loop = asyncio.get_running_loop()
    received, deadline = 0, loop.time() + seconds
    chunks = aiter(stream)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(chunks), max(deadline - loop.time(), 0))
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:  # TimeoutError itself only from Python 3.11
            raise _BodyTooSlow from None
        received += len(chunk)
        if received > limit:
            raise _BodyTooLarge
        yield chunk


def content_policy(page: str) -> str:
    """The page's content security policy: its inline script and style allowed by hash, images
    from this origin and the data/blob URLs it makes, requests to this origin only, no framing."""

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, flags=re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks)
        return " ".join(f"'sha256-{d}'" for d in digests)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""Sent with every answer, besides the content security policy."""


def api_docs(schema: dict[str, Any]) -> str:
    """The API's reference as a static page, from its OpenAPI schema (no script, no CDN)."""
    info = schema["info"]
    parts = [
        f"<h1>{html.escape(info['title'])} {html.escape(info['version'])} API</h1>"
        f"<p>{html.escape(info.get('description', ''))} The OpenAPI schema: "
        "<a href='/openapi.json'>/openapi.json</a>.</p>"
    ]
    for path, methods in schema.get("paths", {}).items():
        for method, operation in methods.items():
            text = operation.get("description") or operation.get("summary") or ""
            parts.append(
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2>"
                f"<p>{html.escape(text)}</p>"
            )
            rows = "".join(
                f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{html.escape(p['in'])}"
                f"</td><td>{html.escape(p.get('description', ''))}</td></tr>"
                for p in operation.get("parameters", [])
            )
            if rows:
                parts.append(
                    f"<table><tr><th>parameter</th><th>in</th><th></th></tr>{rows}</table>"
                )
            answers = "; ".join(
                f"{code} {html.escape(answer.get('description', ''))}"
                for code, answer in operation.get("responses", {}).items()
            )
            parts.append(f"<p>Answers: {answers}</p>")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>aedr API</title>"
        f"<style>{DOCS_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


DOCS_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto}td{padding:2px 8px}"
)
ERROR_ANSWERS: dict[int | str, dict[str, Any]] = {
    400: {"description": "a malformed upload, or no images"},
    401: {"description": "missing or wrong token"},
    408: {"description": "the upload's body did not arrive in time"},
    413: {"description": "request over the size limit"},
    415: {"description": "not multipart/form-data"},
    422: {"description": "every file refused: each result names its reason and status"},
    503: {"description": "too many uploads at once: retry after Retry-After seconds"},
}
"""What ``/api/attribute`` answers besides 200 (its OpenAPI description); every error's body is
``{"detail": message}``, a refused file's ``{"filename", "status", "error"}`` in ``results``."""


def create_app(service: AttributionService, access: Access = Access()) -> FastAPI:
    """The FastAPI application: the page at ``/``, the API under ``/api``, docs at ``/docs``."""
    limits, token = service.limits, access.token
    request_limit = limits.max_request_bytes

    class InMemoryParser(MultiPartParser):
        spool_max_size = request_limit  # uploads stay in memory: the body is capped below

    def check_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer TOKEN'")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="aedr",
        version=__version__,
        description="Which latent diffusion model made this image? AEDR attribution over HTTP.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its script from a CDN: /docs is rendered here
        redoc_url=None,
    )
    api = APIRouter(prefix="/api", dependencies=[Depends(check_token)])
    page_html = resources.files("aedr").joinpath("web/index.html").read_text(encoding="utf-8")
    docs_policy = content_policy(f"<style>{DOCS_STYLE}</style>")
    policy = content_policy(page_html)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        response = await _guarded(request, call_next)
        response.headers.update(SECURITY_HEADERS)
        docs = request.url.path == "/docs"
        response.headers["Content-Security-Policy"] = docs_policy if docs else policy
        return response

    async def _guarded(request: Request, call_next):
        host = request.headers.get("host", "")
        if not access.host_allowed(host):
            return JSONResponse(
                {"detail": f"this server does not answer to the host {host!r}"}, status_code=421
            )
        if request.method == "OPTIONS":  # what is allowed; no cross-origin grant
            return Response(status_code=204, headers={"Allow": "GET, HEAD, POST, OPTIONS"})
        unsafe = request.method not in ("GET", "HEAD")
        origin = request.headers.get("origin")
        if unsafe and not access.origin_allowed(origin, host, request.url.scheme):
            return JSONResponse(
                {"detail": f"cross-origin request from {origin!r} refused"}, status_code=403
            )
        return await call_next(request)

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse,
                   include_in_schema=False)  # fmt: skip
    def page() -> str:
        return page_html

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        return api_docs(app.openapi())

    @app.get("/results/{result_id}", response_class=HTMLResponse, include_in_schema=False)
    def result_page(result_id: str) -> str:
        return page()  # the page reads the id from its address and fetches the record

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml")

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "models": [c.model for c in service.calibrations]}  # fmt: skip

    @api.get("/models")
    def models() -> list[dict[str, Any]]:
        return service.models()

    async def stored(result_id: str) -> dict[str, Any]:
        found = None
        if RESULT_ID.fullmatch(result_id):
            found = await service.run(service.get_result, result_id)
        if found is None:
            raise HTTPException(404, f"no result with id {result_id!r}")
        return found

    @api.get("/results/{result_id}")
    async def result(result_id: str) -> dict[str, Any]:
        return await stored(result_id)

    @api.get("/records")
    async def records(
        id: Annotated[list[str], Query(description="result ids (repeat for a batch)")],
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Response:
        """Case records of one or more results (at most ``MAX_RECORD_IDS``), as a JSON list or a
        CSV (one row per model)."""
        if len(id) > MAX_RECORD_IDS:
            raise HTTPException(
                422, f"{len(id)} result ids: ask for at most {MAX_RECORD_IDS} in one request"
            )
        found = [await stored(result_id) for result_id in id]
        name = f"aedr-{found[0]['id'][:8]}" if len(found) == 1 else f"aedr-batch-{len(found)}"
        disposition = {"Content-Disposition": f'attachment; filename="{name}.{format}"'}
        if format == "csv":
            return Response(records_csv(found), media_type="text/csv", headers=disposition)
        return JSONResponse(found, headers=disposition)

    @api.post("/attribute", openapi_extra={"requestBody": UPLOAD_BODY}, responses=ERROR_ANSWERS)
    async def attribute(request: Request) -> JSONResponse:
        """Attribute each uploaded image (form field ``files``, one or more).

        Every file gets a result or an error with its HTTP status; the response is 200 when at
        least one file was attributed, else the first file's error status.
        """
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send the images as multipart/form-data in field 'files'")
        if service.pending >= limits.max_pending:  # refused before the body is read
            raise HTTPException(
                503, f"{service.pending} uploads are being received or scored: retry shortly",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        service.pending += 1
        try:
            return await _attribute(request)
        finally:
            service.pending -= 1

    async def _attribute(request: Request) -> JSONResponse:
        parser = InMemoryParser(
            request.headers, _capped(request.stream(), request_limit, limits.body_timeout),
            max_files=limits.max_files, max_fields=limits.max_files,
        )  # fmt: skip
        try:
            form = await parser.parse()
        except _BodyTooLarge:
            raise HTTPException(
                413, f"request over {request_limit} bytes: send fewer images per request"
            ) from None
        except _BodyTooSlow:
            raise HTTPException(
                408, f"the upload did not arrive within {limits.body_timeout:g} seconds"
            ) from None
        except MultiPartException as exc:
            raise HTTPException(400, f"malformed upload: {exc.message}") from None
        try:
            uploads = [f for f in form.getlist("files") if not isinstance(f, str)]
            if not uploads:
                raise HTTPException(400, "no images: send them in the form field 'files'")
            results = [await _attribute_upload(service, upload) for upload in uploads]
        finally:
            await form.close()
        ok = [r for r in results if "error" not in r]
        status = 200 if ok else results[0]["status"]
        return JSONResponse({"results": results}, status_code=status)

    app.include_router(api)
    return app


async def _attribute_upload(service: AttributionService, upload) -> dict[str, Any]:
    filename = display_name(upload.filename)
    data = await upload.read(service.limits.max_upload_bytes + 1)
    try:
        if len(data) > service.limits.max_upload_bytes:
            raise UploadError(413, f"file over the upload limit of "
                                   f"{service.limits.max_upload_bytes} bytes")  # fmt: skip
        return await service.run(service.attribute, filename, data)
    except UploadError as exc:
        return {"filename": filename, "status": exc.status, "error": str(exc)}


def serve(
    service: AttributionService, access: Access, host: str, port: int, log_level: str = "info"
) -> None:
    """Serve with uvicorn, with the service's header timeout and prompt shutdown: on SIGTERM or
    Ctrl-C the requests waiting for the model get 503 at once and the service closes within
    ``shutdown_timeout`` seconds, even while an image is being scored (``service.abandoned``:
    the caller should then end the process without waiting for that thread)."""
    import uvicorn

    limits = service.limits
    config = uvicorn.Config(
        create_app(service, access), host=host, port=port, log_level=log_level,
        http=_protocol(limits.header_timeout), timeout_graceful_shutdown=limits.shutdown_timeout,
    )  # fmt: skip

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            service.stop()

    Server(config).run()


def _protocol(header_timeout: float):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers take longer than
    ``header_timeout`` seconds (uvicorn's keep-alive timeout does not cover a client that sends
    a byte at a time)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self) -> None:
            self._arm()  # the next request on this connection gets its own deadline
            super().on_response_complete()  # (which disarms it if that request is here already)

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers arrived
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return Protocol
