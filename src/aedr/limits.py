"""What ``aedr serve`` accepts, how long it waits and what it keeps: its limits, declared once
for the service and its flags (importable without the web extra)."""

from __future__ import annotations

from dataclasses import dataclass

from aedr.measure.images import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Limits:
    """What one request may send, and how long and how many the service waits for;
    ``max_pixels`` is checked from the header, before decoding."""

    max_upload_bytes: int = 50 * 2**20
    max_files: int = 32
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_request_bytes: int = 100 * 2**20  # a whole request, held in memory while it is parsed
    max_pending: int = 4  # uploads received or queued at once: bounds the memory they hold
    header_timeout: float = 10.0  # seconds for a request's headers to arrive
    body_timeout: float = 120.0  # seconds for an upload's whole body to arrive
    keep_days: float = 30.0  # a result is deleted this long after it was made
    keep_images: bool = True  # keep each upload with its result (False: its hashes and facts only)
    shutdown_timeout: int = 3  # seconds SIGTERM waits for answers under way
