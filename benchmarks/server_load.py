"""``aedr serve`` under hostile clients: concurrent large uploads and slow connections.

Starts ``aedr serve`` (a taesd calibration made here on noise images: the verdicts do not
matter, the load does) and samples its resident memory every 20 ms while:

1. one flat PNG at a time of each of ``--sizes`` megapixels (default 0.25, 1, 4, 16): its
   answer, time and the server's peak memory, under the default memory budget;
2. ``--uploads`` clients (default 8) each POST a ``--upload-mb`` (default 95) MB file at once:
   every answer's status and time, and the server's peak memory;
3. ``--slow`` connections (default 1,000) each send one byte of a request and wait: the time of a
   normal request made meanwhile, and when the server has closed all of them.

    python benchmarks/server_load.py   # needs the web extra and taesd in $AEDR_WEIGHTS_DIR
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MemoryWatch:
    """The peak resident memory of a process, sampled in a thread."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            if "VmRSS:" not in status:  # exited
                return
            rss = int(status.split("VmRSS:")[1].split()[0]) * 1024
            self.peak = max(self.peak, rss)

    def reset(self) -> int:
        peak, self.peak = self.peak, 0
        return peak


def post(port: int, body: bytes, boundary: str) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        connection.request("POST", "/api/attribute", body,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})  # fmt: skip
        status = connection.getresponse().status
    except OSError:
        status = 0  # the server closed the connection
    finally:
        connection.close()
    return status, time.perf_counter() - started


def multipart(payload: bytes, boundary: str) -> bytes:
    """A multipart/form-data body with ``payload`` as the one file of field ``files``."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            'filename="upload.png"\r\nContent-Type: image/png\r\n\r\n').encode()  # fmt: skip
    return head + payload + f"\r\n--{boundary}--\r\n".encode()


def get_health(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/health")
    status = connection.getresponse().status
    connection.close()
    return status, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=8)
    parser.add_argument("--upload-mb", type=float, default=95)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--sizes", nargs="*", type=float, default=[0.25, 1, 4, 16])
    args = parser.parse_args()
    aedr = [sys.executable, "-m", "aedr"]
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        rng = np.random.default_rng(0)
        for index in range(6):
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
                folder / f"{index}.png"
            )
        subprocess.run([*aedr, "calibrate", "--model", "taesd", *map(str, folder.glob("*.png")),
                        "--no-default-negatives", "--out", str(folder / "cal.json"), "-q"],
                       check=True)  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            [*aedr, "serve", "--calibration", str(folder / "cal.json"), "--port", str(port),
             "--store", str(folder / "store.sqlite"), "-q"],
        )  # fmt: skip
        try:
            for _ in range(300):
                try:
                    get_health(port)
                    break
                except OSError:
                    time.sleep(0.2)
            watch = MemoryWatch(server.pid)
            time.sleep(0.5)
            idle = watch.reset()
            print(f"server idle: {idle / 2**20:.0f} MiB resident")

            boundary = "aedrbenchmark"
            for size in args.sizes:
                side = round((size * 1e6) ** 0.5 / 8) * 8
                buffer = io.BytesIO()
                Image.new("RGB", (side, side)).save(buffer, "PNG")
                status, seconds = post(port, multipart(buffer.getvalue(), boundary), boundary)
                print(f"a flat {side} px PNG ({size:g} MP, {buffer.tell() // 1024} KB): HTTP "
                      f"{status} after {seconds:.1f} s; server peak {watch.reset() / 2**20:.0f} "
                      "MiB resident", flush=True)  # fmt: skip

            body = multipart(os.urandom(int(args.upload_mb * 2**20)), boundary)
            with ThreadPoolExecutor(args.uploads) as pool:
                answers = list(pool.map(lambda _: post(port, body, boundary), range(args.uploads)))
            print(f"\n{args.uploads} concurrent uploads of {args.upload_mb:g} MB:")
            for status, seconds in sorted(answers):
                print(f"  HTTP {status} after {seconds:.2f} s")
            print(f"  server peak: {watch.reset() / 2**20:.0f} MiB resident")

            slow = []
            started = time.perf_counter()
            for _ in range(args.slow):
                connection = socket.create_connection(("127.0.0.1", port))
                connection.sendall(b"G")
                slow.append(connection)
            opened = time.perf_counter() - started
            status, seconds = get_health(port)
            print(f"\n{args.slow} slow connections (one byte each), opened in {opened:.1f} s:")
            print(f"  a normal request meanwhile: HTTP {status} in {seconds * 1000:.0f} ms")
            for connection in slow:
                connection.settimeout(60)
                with contextlib.suppress(OSError):
                    connection.recv(1)
            closed = time.perf_counter() - started
            print(f"  all closed by the server {closed:.1f} s after the first was opened")
            print(f"  server peak: {watch.reset() / 2**20:.0f} MiB resident")
            for connection in slow:
                connection.close()
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
