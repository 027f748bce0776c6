"""End to end in a real browser: `aedr serve` with the shared taesd, uploads through the page (a
decoder-made image, and a photo with a pasted decoder-made region shown as a partial verdict with
its local map).

Needs Debian's chromium (``.ci/run`` installs it; ``$AEDR_CHROMIUM`` names another binary) and
Playwright for Python, which drives that binary (no browser download). The screenshot is saved
to ``$AEDR_TEST_ARTIFACTS`` (default ``test-artifacts/`` in the repository).
"""

import functools
import http.server
import os
import shutil
import socket
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import import_or_skip, skip_unless_ci
from PIL import Image

from aedr.autoencoders import create_autoencoder
from aedr.decide.attribution import Attributor
from aedr.measure.scorer import Scorer
from aedr.synthesis import decoder_images, photo_crops
from aedr.workflows import calibrate_images

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def chromium_path() -> str:
    found = (
        os.environ.get("AEDR_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not found:
        skip_unless_ci(
            "no Chromium found: install Debian's chromium (.ci/run does) or set AEDR_CHROMIUM"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"aedr serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"aedr serve did not answer at {url} within {seconds} s")


@pytest.mark.slow
def test_upload_through_the_page_shows_the_verdict(tae_dir, shared_dir, tmp_path):
    playwright = import_or_skip("playwright.sync_api", "playwright is not installed")
    executable = chromium_path()
    taesd = create_autoencoder("taesd", weights_dir=tae_dir)
    photos = photo_crops([shared_dir / "images" / "real" / "kodak"], 192)[:13]
    made = decoder_images(taesd, photos, 13, seed=0)
    paths = []
    for index, rgb in enumerate(made):
        paths.append(tmp_path / f"made-{index}.png")
        Image.fromarray(rgb).save(paths[-1])
    scorer = Scorer([taesd], local_maps=True)
    calibration = calibrate_images(scorer, paths[:12], "aedr", local_window=48).calibration
    calibration.save(tmp_path / "taesd.json")
    suspect = paths[12]
    expected = Attributor([calibration], [taesd]).attribute_file(suspect)
    composite, mask = pasted_region(taesd, shared_dir, tmp_path)

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "aedr", "serve", "--calibration", str(tmp_path / "taesd.json"),
         "--weights-dir", str(tae_dir), "--port", str(port)],  # access log: the 403 below
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    artifacts = Path(os.environ.get("AEDR_TEST_ARTIFACTS", REPO / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    try:
        wait_until_serving(url, server)
        with playwright.sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(url)
            page.wait_for_function(
                "document.getElementById('models').textContent.includes('taesd')"
            )
            page.set_input_files("#files", str(suspect))
            verdict = page.wait_for_selector("[data-verdict]", timeout=120_000)
            shown = verdict.get_attribute("data-verdict")
            rows = page.locator(".model-row").count()
            markers = page.locator("svg.distribution .marker").count()
            status = page.locator("#status").text_content()
            page.screenshot(path=str(artifacts / "web-attribution.png"), full_page=True)
            page.set_input_files("#files", str(composite))
            page.wait_for_selector("[data-verdict='partial']", timeout=120_000)
            region = page.locator(".localization rect").first
            box = [int(region.get_attribute(k)) for k in ("x", "y", "width", "height")]
            overlay_shown = page.locator(".localization .overlay").is_visible()
            page.screenshot(path=str(artifacts / "web-partial.png"), full_page=True)
            page.locator(".toggle-map").first.focus()
            page.keyboard.press("Space")  # the overlay toggles by keyboard too
            overlay_hidden = not page.locator(".localization .overlay").is_visible()
            results_before = stored_results()
            attack = cross_origin_post(page, url, suspect)
            results_after = stored_results()
            browser.close()
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0].decode(errors="replace")
    assert shown == expected.verdict, log
    assert rows == 1 and markers == 1 and status == "Done: 1 image."
    left, top, width, height = box
    drawn = np.zeros_like(mask)
    drawn[top : top + height, left : left + width] = True
    assert (drawn & mask).sum() / (drawn | mask).sum() > 0.4, box  # the region drawn is the mask
    assert overlay_shown and overlay_hidden
    assert results_before == 2 and attack == "sent" and results_after == 2, log  # refused
    assert '"POST /api/attribute HTTP/1.1" 403' in log


def pasted_region(autoencoder, shared_dir: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """A photo with a quarter of it replaced by the decoder's image of it, and that mask."""
    photo = photo_crops([shared_dir / "images" / "real" / "kodak"], 256)[10]
    made = decoder_images(autoencoder, [photo], 1, seed=2, reconstructions=1)[0]
    mask = np.zeros(photo.shape[:2], bool)
    mask[40:168, 64:192] = True
    Image.fromarray(np.where(mask[..., None], made, photo)).save(folder / "composite.png")
    return folder / "composite.png", mask


def stored_results() -> int:
    """How many attributions the server (whose store is this test's $AEDR_STORE) has kept."""
    with sqlite3.connect(os.environ["AEDR_STORE"]) as db:
        return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def cross_origin_post(page, target: str, image: Path) -> str:
    """A page on another local origin makes the browser POST an image to ``target``'s API (a
    no-cors request: the page cannot read the answer, only the side effect could tell)."""
    data = list(image.read_bytes())
    html = f"""<script>
    const body = new FormData();
    body.append("files", new Blob([new Uint8Array({data})], {{type: "image/png"}}), "x.png");
    fetch("{target}api/attribute", {{method: "POST", mode: "no-cors", body}})
      .then(() => document.title = "sent", () => document.title = "failed");
    </script>"""
    port = free_port()
    handler = functools.partial(OnePage, html.encode())
    with socketserver.TCPServer(("127.0.0.1", port), handler) as other:
        threading.Thread(target=other.handle_request, daemon=True).start()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.title !== ''", timeout=60_000)
        time.sleep(1)  # the server's answer, refused or not, has arrived
        return page.title()


class OnePage(http.server.BaseHTTPRequestHandler):
    """Serves one HTML page (the foreign origin of the cross-origin test)."""

    def __init__(self, body: bytes, *args, **kwargs):
        self.body = body
        super().__init__(*args, **kwargs)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass
