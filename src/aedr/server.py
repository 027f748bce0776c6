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
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple
from urllib.parse import urlsplit

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field
from starlette.formparsers import MultiPartException, MultiPartParser

from aedr import __version__
from aedr.attributor import Attributor
from aedr.decide.attribution import Attribution
from aedr.decide.calibration import STABLE_CALIBRATION_IMAGES, Calibration
from aedr.decide.localization import Region
from aedr.limits import Limits
from aedr.measure.fileinfo import file_facts
from aedr.seals import SigningKey, seal

if TYPE_CHECKING:
    import numpy as np

    from aedr.measure.scorer import Scorer
    from aedr.measure.store import ScoreStore

TOKEN_ENV = "AEDR_TOKEN"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ImageFormat(NamedTuple):
    """How an allowed upload format is kept (file extension) and served back (media type)."""

    extension: str
    media_type: str


ALLOWED_FORMATS = {
    "PNG": ImageFormat("png", "image/png"), "JPEG": ImageFormat("jpg", "image/jpeg"),
    "WEBP": ImageFormat("webp", "image/webp"), "GIF": ImageFormat("gif", "image/gif"),
    "TIFF": ImageFormat("tif", "image/tiff"), "BMP": ImageFormat("bmp", "image/bmp"),
}  # fmt: skip
RESULT_ID = re.compile(r"[0-9a-f]{32}")
ALLOWED_METHODS = "GET, HEAD, POST, PATCH, DELETE, OPTIONS"
MAX_RECORD_IDS = 256
"""Most results one ``/api/records`` request may name."""
RECORD_FIELDS = (
    "result_id", "filename", "sha256", "bytes", "width", "height", "format", "jpeg_quality",
    "uploaded", "tool", "verdict", "verdict_group", "candidates", "region_share", "confidence",
    "caution",
    "c2pa", "model", "autoencoder", "calibration_digest", "calibration_n", "calibration_alpha",
    "statistic", "signal", "threshold", "belongs", "p_value", "p_value_resolution", "margin",
    "false_acceptance", "false_attribution", "explanation", "degradation", "threshold_quality",
    "threshold_enlargement", "threshold_grey",
    "local_threshold", "regions", "appended_bytes", "metadata", "dtype", "device", "robust",
    "alignment", "max_false_attribution", "case", "note", "error", "record_digest",
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


def _negatives_summary(calibration: Calibration) -> dict[str, Any] | None:
    """A calibration's negatives as ``/api/models`` gives them: how many, what, the share it
    accepts, and the same for each kind where it tells grey ones apart (None without any)."""
    negatives = calibration.negatives
    if not negatives:
        return None
    by_kind = {kind: {"false_acceptance": share, "n": n}
               for kind, (share, n) in calibration.false_acceptance_by_kind.items()}  # fmt: skip
    return {"n": negatives["n"], "sources": negatives["sources"],
            "false_acceptance": calibration.false_acceptance, "by_kind": by_kind}  # fmt: skip


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
        self._maps: Scorer | None = None  # local maps on demand (see local_maps)
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
        reuses the measurements from the store, not this result or its file name). It is kept
        with the image unless the limits say hashes only.
        """
        result_id = secrets.token_hex(16)
        with self._upload_file(data) as path:
            facts = file_facts(data)  # opens: the upload's header has been read already
            attribution = self.attributor.attribute_file(path)
        if attribution.error:
            raise UploadError(422, attribution.error)
        rows = [{**row, "path": filename} for row in attribution.rows()]
        result = {
            "id": result_id, "filename": filename, "verdict": attribution.verdict,
            "verdict_group": attribution.verdict_group, "candidates": list(attribution.candidates),
            "confidence": attribution.confidence, "caution": attribution.caution, "rows": rows,
            "region_share": attribution.region_share, "localization": _localization(attribution),
            "file": facts.as_dict(), "image_kept": self.limits.keep_images,
            "uploaded": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "tool": f"aedr {__version__}", "calibrations": self.identities,
            "settings": self._settings(),
            "false_attribution": None
            if attribution.false_attribution is None
            else attribution.false_attribution.as_dict(),
            "explanation": attribution.explanation,
        }  # fmt: skip
        result = seal(result, self.signing_key)  # `aedr verify` checks it
        if self.store is not None:
            self.store.expire_results(self.limits.keep_days)
            self.store.put_result(result_id, result, data if self.limits.keep_images else None)
        return {**result, "annotation": {}}

    @contextmanager
    def _upload_file(self, data: bytes) -> Iterator[Path]:
        """``data``, an allowed image (else ``UploadError``), as a file in the upload folder under
        a random name, readable by its owner only, removed after the block."""
        extension = ALLOWED_FORMATS[image_format(data, self.limits.max_pixels)].extension
        path = self.upload_folder / f"{uuid.uuid4().hex}.{extension}"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as stream:
            stream.write(data)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _settings(self) -> dict[str, Any]:
        """How the images are measured (per model: weights, precision, device and every
        measurement setting) and decided, and what the server keeps."""
        models = self.attributor.scorer.models
        return {
            "measurement": {m.name: p.as_dict() for m in models if (p := m.loaded_provenance())},
            "max_false_attribution": self.attributor.max_false_attribution,
            "keep_days": self.limits.keep_days, "keep_images": self.limits.keep_images,
        }  # fmt: skip

    def _identities(self) -> list[dict[str, Any]]:
        """What each candidate's decision rests on: its autoencoder and its calibration (the
        threshold a clean colour image is decided at; every negative, by kind)."""
        kept = {c.model: c for c in self.attributor.thresholds.candidates}
        return [
            {
                "model": c.model, "autoencoder": c.measurement_provenance.identity,
                "calibration_digest": c.digest or c.content_digest(), "n": c.n,
                "alpha": c.alpha, "statistic": c.statistic, "threshold": c.threshold,
                "caution": "" if c.n >= STABLE_CALIBRATION_IMAGES else
                f"calibrated on only {c.n} images: its threshold moves with which images they "
                f"were ({STABLE_CALIBRATION_IMAGES} or more give a stable one)",
                "negatives": _negatives_summary(kept[c.model]),
            }
            for c in self.calibrations
        ]  # fmt: skip

    def get_result(self, result_id: str) -> dict[str, Any] | None:
        if self.store is None:
            return None
        return self.store.get_result(result_id, self.limits.keep_days)

    def result_image(self, result_id: str) -> bytes | None:
        if self.store is None:
            return None
        return self.store.result_image(result_id, self.limits.keep_days)

    def find_results(self, text: str, verdict: str, limit: int) -> list[dict[str, Any]]:
        if self.store is None:
            return []
        return self.store.find_results(text, verdict, self.limits.keep_days, limit)

    def local_maps(self, result_id: str) -> list[dict[str, Any]] | None:
        """Every candidate's local map of a kept result's image, drawn now (the result keeps
        only a partial verdict's); None when the image is not kept."""
        from aedr.workflows import localize_images

        data = self.result_image(result_id)
        if data is None:
            return None
        with self._upload_file(data) as path:
            found = list(localize_images(self._map_scorer(), [path], self.attributor.calibrations))
        return [
            {**_drawn_map(f.measurement.model, f.statistic, f.threshold, f.regions),
             "share": f.share, "window": f.window, "verdict": f.verdict}
            if f.statistic is not None else {"model": f.measurement.model, "error": f.error}
            for f in found
        ]  # fmt: skip

    def _map_scorer(self) -> Scorer:
        """A scorer keeping local maps (on the image's own grid) over the same loaded models."""
        if self._maps is None:
            from aedr.measure.scorer import Scorer

            scorer = self.attributor.scorer
            self._maps = Scorer(
                [m.autoencoder for m in scorer.models], replace(scorer.settings, robust="off"),
                max_pixels=scorer.max_pixels, max_memory=scorer.max_memory, local_maps=True,
            )  # fmt: skip
        return self._maps

    def annotate(self, result_id: str, annotation: dict[str, str]) -> bool:
        return self.store is not None and self.store.annotate_result(result_id, annotation)

    def delete(self, result_id: str) -> bool:
        return self.store is not None and self.store.delete_result(result_id)

    def models(self) -> list[dict[str, Any]]:
        """Each calibrated model with its threshold and calibration signals (for the page's plot),
        and the signals of its JPEG thresholds by quality, of its enlargement thresholds by
        factor, of its chain thresholds by factor@quality and of its threshold for grey
        images."""
        return [
            {
                **self.identities[i], "group": self.attributor.scorer.models[i].group,
                "parameters": c.parameters, "signals": c.signals, "provenance": c.provenance,
                "jpeg_signals": {str(q): c.at_jpeg_quality(q).signals for q in c.jpeg_qualities},
                "enlargement_signals": {
                    f"{f:g}": c.at_enlargement(f).signals for f in c.enlargement_factors
                },
                "chain_signals": {
                    f"{f:g}@{q}": c.at_chain(f, q).signals for f, q in c.chain_steps
                },
                "grey_signals": c.at_grey(True).signals if c.grey else None,
            }
            for i, c in enumerate(self.calibrations)
        ]  # fmt: skip


def record_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A result's CSV case record: one row per candidate model, ``RECORD_FIELDS`` in order."""
    file, c2pa = result.get("file", {}), result.get("file", {}).get("c2pa", {})
    calibrations = {c["model"]: c for c in result.get("calibrations", [])}
    settings, local = result.get("settings", {}), result.get("localization") or {}
    provenance = c2pa.get("status", "")
    if c2pa.get("generated"):
        provenance = "declares generation by " + (", ".join(c2pa["generators"]) or "a generator")
    metadata = [f"{k}: {v}" for k, v in file.get("png_text", {}).items()]
    metadata += [f"EXIF {k}: {v}" for k, v in file.get("exif", {}).items()]
    regions = " ".join(
        "{}% x {}-{} y {}-{}".format(round(100 * r["share"]), *r["box"][::2], *r["box"][1::2])
        for r in local.get("regions", [])
    )
    rows = []
    for row in result["rows"]:
        calibration = calibrations.get(row["model"], {})
        measured = settings.get("measurement", {}).get(row["model"], {})
        named = local.get("model") == row["model"]
        values = {
            **{k: file.get(k) for k in ("sha256", "bytes", "width", "height", "format",
                                        "jpeg_quality", "appended_bytes")},
            **{k: measured.get(k) for k in ("dtype", "device", "robust", "alignment")},
            **row,  # the attribution row: verdict, candidates, model and every number
            "result_id": result["id"], "filename": result["filename"],
            "uploaded": result.get("uploaded"), "tool": result.get("tool"), "c2pa": provenance,
            "autoencoder": calibration.get("autoencoder"),
            "calibration_digest": calibration.get("calibration_digest"),
            "calibration_n": calibration.get("n"), "calibration_alpha": calibration.get("alpha"),
            "local_threshold": local.get("threshold") if named else None,
            "regions": regions if named else None, "metadata": " | ".join(metadata),
            "max_false_attribution": settings.get("max_false_attribution"),
            **{k: result.get("annotation", {}).get(k) for k in ("case", "note")},
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
    return _drawn_map(attribution.candidates[0], attribution.local_map,
                      attribution.local_threshold, attribution.regions)  # fmt: skip


def _drawn_map(
    model: str, statistic: np.ndarray, threshold: float | None, regions: Sequence[Region]
) -> dict[str, Any]:
    """A model's local map as the page draws it: a PNG overlay of the image's size (a data
    URL), the calibrated local threshold (None without one) and the consistent regions."""
    from aedr.decide.report import map_overlay_png

    height, width = statistic.shape
    overlay = map_overlay_png(statistic, threshold)
    return {
        "model": model, "width": width, "height": height, "threshold": threshold,
        "regions": [r.as_dict() for r in regions],
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


class ErrorBody(BaseModel):
    """Every error answer's body: what went wrong, in words (a refused file of an upload is a
    result ``{"filename", "status", "error"}`` instead, beside the others)."""

    detail: str


class Annotation(BaseModel):
    """The analyst's case label and note on a result (not part of its sealed record)."""

    case: str = Field("", max_length=100, description="a case number or label")
    note: str = Field("", max_length=4000, description="the analyst's note")


def _answers(**codes: str) -> dict[int | str, dict[str, Any]]:
    return {
        int(code[1:]): {"description": text, "model": ErrorBody} for code, text in codes.items()
    }


COMMON_ANSWERS = _answers(
    _401="missing or wrong token", _422="a parameter out of its range or of the wrong type",
    _503="the service is stopping",
)  # fmt: skip
RESULT_ANSWERS = {
    **COMMON_ANSWERS,
    **_answers(_404="no such result (deleted, expired or never made)"),
}
ERROR_ANSWERS = {
    **COMMON_ANSWERS,
    **_answers(
        _400="a malformed upload, or no images", _408="the upload's body did not arrive in time",
        _413="request over the size limit", _415="not multipart/form-data",
        _422="every file refused: each result names its reason and status",
        _503="too many uploads at once (retry after Retry-After seconds), or stopping",
    ),
}  # fmt: skip
"""What ``/api/attribute`` answers besides 200 (its OpenAPI description); every error's body is
an ``ErrorBody``."""


def validation_text(error: RequestValidationError) -> str:
    """A request validation error in one line: where, and what is wrong."""
    return "; ".join(
        f"{' '.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in error.errors()
    )


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
            return Response(status_code=204, headers={"Allow": ALLOWED_METHODS})
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
    def result_page(result_id: str) -> HTMLResponse:
        # the page reads the id from its address and fetches the record, or says it is no id
        return HTMLResponse(page_html, status_code=200 if RESULT_ID.fullmatch(result_id) else 404)

    @app.get("/history", response_class=HTMLResponse, include_in_schema=False)
    def history_page() -> str:
        return page_html  # the page shows the kept results first at this address

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_text(error)}, status_code=422)

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(FAVICON, media_type="image/svg+xml")

    @api.get("/health", responses=COMMON_ANSWERS)
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "models": [c.model for c in service.calibrations],
                "keep_days": limits.keep_days, "keep_images": limits.keep_images}  # fmt: skip

    @api.get("/models", responses=COMMON_ANSWERS)
    def models() -> list[dict[str, Any]]:
        return service.models()

    def checked(result_id: str) -> str:
        if not RESULT_ID.fullmatch(result_id):
            raise HTTPException(404, f"no result with id {result_id!r}")
        return result_id

    async def stored(result_id: str) -> dict[str, Any]:
        found = await service.run(service.get_result, checked(result_id))
        if found is None:
            raise HTTPException(404, f"no result with id {result_id!r}")
        return found

    @api.get("/results", responses=COMMON_ANSWERS)
    async def results(
        text: Annotated[str, Query(max_length=200, description="part of a file name, SHA-256, "
                                   "case label or note (any case)")] = "",
        verdict: Annotated[str, Query(max_length=200, description="only this verdict (a model, "
                                      "none, ambiguous or partial)")] = "",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The kept results, newest first: id, file name, SHA-256, verdict, candidates,
        confidence, upload time, whether the image is kept, and the annotation."""
        return await service.run(service.find_results, text, verdict, limit)

    @api.get("/results/{result_id}", responses=RESULT_ANSWERS)
    async def result(result_id: str) -> dict[str, Any]:
        """A kept result: its sealed case record, with the analyst's ``annotation`` beside."""
        return await stored(result_id)

    @api.get("/results/{result_id}/image", responses=RESULT_ANSWERS, response_class=Response)
    async def result_image(result_id: str) -> Response:
        """The image a result was made on, as uploaded (404 when the server keeps hashes only)."""
        data = await service.run(service.result_image, checked(result_id))
        if data is None:
            raise HTTPException(404, f"no image kept for result {result_id!r}")
        try:
            kind = ALLOWED_FORMATS[image_format(data, service.limits.max_pixels)].media_type
        except UploadError:  # kept under other limits
            kind = "application/octet-stream"
        return Response(data, media_type=kind, headers={"Cache-Control": "private, no-store"})

    @api.get("/results/{result_id}/maps", responses=RESULT_ANSWERS)
    async def result_maps(result_id: str) -> list[dict[str, Any]]:
        """Every candidate's local map of the result's image, drawn now: a PNG overlay, the
        calibrated local threshold and consistent regions where the calibration has one (404
        when the server keeps hashes only)."""
        try:
            maps = await service.run(service.local_maps, checked(result_id))
        except UploadError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        if maps is None:
            raise HTTPException(404, f"no image kept for result {result_id!r}: maps need it")
        return maps

    @api.patch("/results/{result_id}", responses=RESULT_ANSWERS)
    async def annotate(result_id: str, annotation: Annotated[Annotation, Body()]) -> Annotation:
        """Set the result's case label and note (outside its seal: the evidence is unchanged)."""
        if not await service.run(service.annotate, checked(result_id), annotation.model_dump()):
            raise HTTPException(404, f"no result with id {result_id!r}")
        return annotation

    @api.delete("/results/{result_id}", status_code=204, responses=RESULT_ANSWERS,
                response_class=Response)  # fmt: skip
    async def delete(result_id: str) -> Response:
        """Delete the result and its image from the server's store."""
        if not await service.run(service.delete, checked(result_id)):
            raise HTTPException(404, f"no result with id {result_id!r}")
        return Response(status_code=204)

    @api.get("/records", responses=RESULT_ANSWERS)
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
