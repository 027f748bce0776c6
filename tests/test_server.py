"""The web service through FastAPI's test client: good images, bad uploads, limits, token, queue."""

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import import_or_skip, loss_record, smooth_image
from PIL import Image

import_or_skip("fastapi", "the web extra (fastapi) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from aedr.attributor import Attributor  # noqa: E402
from aedr.measure.scorer import Scorer  # noqa: E402
from aedr.measure.store import ScoreStore  # noqa: E402
from aedr.server import (  # noqa: E402
    Access,
    AttributionService,
    Limits,
    create_app,
    display_name,
)

LOCAL = "http://127.0.0.1:8000"
from aedr.synthesis import decoder_images  # noqa: E402
from aedr.workflows import calibrate_images  # noqa: E402


def png_bytes(rgb: np.ndarray, file_format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, file_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def made_images(random_tiny) -> list[np.ndarray]:
    photos = [smooth_image(seed, (64, 64)) for seed in range(12)]
    return decoder_images(random_tiny, photos, 12, seed=3)


@pytest.fixture(scope="module")
def tiny_calibration(random_tiny, made_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    paths = []
    for index, rgb in enumerate(made_images[:10]):
        paths.append(folder / f"{index}.png")
        Image.fromarray(rgb).save(paths[-1])
    return calibrate_images(
        Scorer([random_tiny]), paths, "aedr", default_negatives=False
    ).calibration


def make_service(random_tiny, calibration, tmp_path, models=None, **limits):
    store = ScoreStore(tmp_path / "store.sqlite")
    attributor = Attributor([calibration], models or [random_tiny], store=store)
    return AttributionService(attributor, Limits(**limits))


@pytest.fixture
def service(random_tiny, tiny_calibration, tmp_path):
    return make_service(random_tiny, tiny_calibration, tmp_path)


@pytest.fixture
def client(service):
    with TestClient(create_app(service), base_url=LOCAL) as client:
        yield client


def post(client, *files, headers=None):
    return client.post("/api/attribute", files=[("files", f) for f in files], headers=headers)


def test_page_health_models_and_openapi(client, tiny_calibration):
    page = client.get("/")
    assert page.status_code == 200 and "Drop images here" in page.text
    assert "http" not in page.text.split("<script>")[0].lower().replace("http-equiv", "")
    assert client.get("/api/health").json()["models"] == ["random-tiny"]
    (model,) = client.get("/api/models").json()
    assert model["threshold"] == tiny_calibration.threshold
    assert model["signals"] == tiny_calibration.signals and model["statistic"] == "aedr"
    assert "/api/attribute" in client.get("/openapi.json").json()["paths"]


def test_attribution_matches_the_library_and_results_are_private_to_each_upload(
    client, service, random_tiny, tiny_calibration, made_images, tmp_path
):
    image = made_images[11]
    response = post(client, ("made.png", png_bytes(image), "image/png"))
    assert response.status_code == 200
    (result,) = response.json()["results"]
    path = tmp_path / "same.png"
    Image.fromarray(image).save(path)
    expected = Attributor([tiny_calibration], [random_tiny]).attribute_file(path)
    assert result["verdict"] == expected.verdict
    (row,) = result["rows"]
    assert row["path"] == "made.png" and row["signal"] == pytest.approx(
        expected.decisions[0].signal
    )
    assert row["p_value"] == pytest.approx(expected.decisions[0].p_value)
    measured = len(service.store)
    again = post(client, ("renamed.png", png_bytes(image), "image/png")).json()["results"][0]
    assert len(service.store) == measured  # the measurement came from the store ...
    assert again["id"] != result["id"]  # ... but the result is this upload's own
    assert again["rows"][0]["path"] == "renamed.png" and again["filename"] == "renamed.png"
    assert client.get(f"/api/results/{result['id']}").json()["filename"] == "made.png"
    assert result["caution"] == ""  # 64 x 64: on the decoder's grid
    cropped = post(client, ("cropped.png", png_bytes(image[3:, 3:]), "image/png")).json()
    assert "61x61 is not a multiple of 8" in cropped["results"][0]["caution"]
    stored = client.get(f"/api/results/{result['id']}")
    assert stored.status_code == 200 and stored.json()["rows"] == result["rows"]
    assert client.get("/api/results/" + "0" * 32).status_code == 404
    assert client.get("/api/results/..%2F..%2Fetc").status_code == 404


def truncated_png() -> bytes:
    return png_bytes(smooth_image(1, (64, 64)))[:300]


@pytest.mark.parametrize(
    ("name", "data", "status", "message"),
    [
        ("page.png", b"<html><body>not an image</body></html>", 415, "not an image"),
        ("empty.png", b"", 422, "empty file"),
        ("cut.png", truncated_png(), 422, "truncated"),
        ("doc.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 415, "not an image"),
    ],
)
def test_bad_uploads_get_a_specific_4xx_and_the_server_keeps_serving(
    client, name, data, status, message
):
    response = post(client, (name, data, "image/png"))
    assert response.status_code == status
    (result,) = response.json()["results"]
    assert message in result["error"] and result["status"] == status
    assert post(client, ("ok.png", png_bytes(smooth_image(2)), "image/png")).status_code == 200


def test_one_bad_file_does_not_lose_the_others(client):
    response = post(
        client,
        ("bad.png", b"not an image", "image/png"),
        ("good.jpg", png_bytes(smooth_image(4), "JPEG"), "image/jpeg"),
    )
    assert response.status_code == 200
    bad, good = response.json()["results"]
    assert bad["status"] == 415 and good["verdict"] in {"random-tiny", "none"}


def test_limits_on_bytes_pixels_and_files(random_tiny, tiny_calibration, tmp_path):
    service = make_service(
        random_tiny,
        tiny_calibration,
        tmp_path,
        max_upload_bytes=20_000,
        max_pixels=5000,
        max_files=2,
        max_request_bytes=50_000,
    )
    with TestClient(create_app(service), base_url=LOCAL) as client:
        noisy = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
        big = post(client, ("big.png", png_bytes(noisy), "image/png"))
        assert big.status_code == 413 and "upload limit" in big.json()["results"][0]["error"]
        wide = post(client, ("wide.png", png_bytes(np.zeros((8, 1000, 3), np.uint8)), "image/png"))
        assert wide.status_code == 413 and "8000 pixels" in wide.json()["results"][0]["error"]
        small = ("s.png", png_bytes(smooth_image(0, (40, 40))), "image/png")
        many = post(client, small, small, small)
        assert many.status_code == 400 and "Too many files" in many.json()["detail"]
        assert post(client, small).status_code == 200
        too_much = post(client, ("n.png", noisy.tobytes() * 2, "image/png"))
        assert too_much.status_code == 413 and "fewer images" in too_much.json()["detail"]
        assert client.post("/api/attribute", json={"files": []}).status_code == 415
        assert client.post("/api/attribute", files={"other": ("x", b"1")}).status_code == 400


def test_token_is_required_on_every_api_call(service):
    with TestClient(create_app(service, Access(token="s3cret")), base_url=LOCAL) as client:
        assert client.get("/").status_code == 200  # the page holds no data
        assert client.get("/api/health").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert client.get("/api/models", headers=wrong).status_code == 401
        image = ("a.png", png_bytes(smooth_image(5)), "image/png")
        assert post(client, image).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert client.get("/api/health", headers=right).status_code == 200
        assert post(client, image, headers=right).status_code == 200


def test_uploads_stay_in_the_service_folder(client, service, tmp_path):
    response = post(client, ("../../../escape.png", png_bytes(smooth_image(6)), "image/png"))
    assert response.json()["results"][0]["filename"] == "escape.png"
    assert not list(tmp_path.parent.parent.glob("**/escape.png"))
    assert list(service.upload_folder.iterdir()) == []  # scored, then removed
    assert display_name("C:\\Users\\x\\evil\x00.png") == "evil?.png"


def test_concurrent_requests_queue_for_one_model_load(random_tiny, tiny_calibration, tmp_path):
    class SlowHandle:
        """A model handle that takes a while to load and counts its loads."""

        name, group, identity = "random-tiny", "random-tiny", "random:0"
        dtype_name, device_kind = "fp32", "cpu"
        loads = 0
        lock = threading.Lock()

        def load(self):
            with self.lock:
                type(self).loads += 1
            time.sleep(0.3)
            return random_tiny

    service = make_service(random_tiny, tiny_calibration, tmp_path, models=[SlowHandle()])
    with TestClient(create_app(service), base_url=LOCAL) as client:
        images = [("x.png", png_bytes(smooth_image(seed)), "image/png") for seed in range(4)]
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda image: post(client, image), images))
    assert [r.status_code for r in responses] == [200] * 4
    assert SlowHandle.loads == 1


def test_serve_refuses_a_public_bind_without_a_token(monkeypatch, tiny_calibration, tmp_path):
    from aedr.cli import main

    monkeypatch.delenv("AEDR_TOKEN", raising=False)
    path = tmp_path / "c.json"
    tiny_calibration.save(path)
    assert main(["serve", "--calibration", str(path), "--host", "0.0.0.0", "-q"]) == 2


def test_foreign_host_headers_and_cross_origin_posts_are_refused(
    service, made_images, random_tiny, tiny_calibration, tmp_path
):
    upload = {"files": ("x.png", png_bytes(made_images[0]), "image/png")}
    with TestClient(create_app(service), base_url=LOCAL) as client:
        assert client.get("/api/models").status_code == 200
        foreign = client.get("/api/models", headers={"Host": "attacker.example:8000"})
        assert foreign.status_code == 421 and "attacker.example" in foreign.json()["detail"]
        assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200
        cross = client.post("/api/attribute", files=upload,
                            headers={"Origin": "http://127.0.0.1:9999"})  # fmt: skip
        assert cross.status_code == 403 and len(service.store) == 0  # nothing measured
        same = client.post("/api/attribute", files=upload, headers={"Origin": LOCAL})
        assert same.status_code == 200 and len(service.store) == 1
    allowed = Access(("127.0.0.1", "proxy.internal"), ("https://tools.example",))
    (tmp_path / "other").mkdir()
    other = make_service(random_tiny, tiny_calibration, tmp_path / "other")
    with TestClient(create_app(other, allowed), base_url=LOCAL) as client:
        assert client.get("/api/health", headers={"Host": "proxy.internal"}).status_code == 200
        ok = client.post("/api/attribute", files=upload,
                         headers={"Origin": "https://tools.example"})  # fmt: skip
        assert ok.status_code == 200


def test_access_for_a_bind():
    loopback = Access.for_bind("127.0.0.1", None)
    assert loopback.host_allowed("localhost:8000") and loopback.host_allowed("[::1]:8000")
    assert not loopback.host_allowed("attacker.example") and not loopback.host_allowed("")
    public = Access.for_bind("0.0.0.0", "t")
    assert public.host_allowed("anything.example") and public.token == "t"
    proxied = Access.for_bind("0.0.0.0", "t", ["aedr.example.org"])
    assert proxied.host_allowed("aedr.example.org") and not proxied.host_allowed("other.org")


def test_a_partial_verdict_carries_its_map_overlay_and_regions():
    import base64

    from aedr.decide.attribution import Attribution
    from aedr.decide.localization import consistent_regions
    from aedr.server import _localization

    statistic = np.ones((40, 60), np.float32)
    statistic[10:30, 20:50] = -1.0
    regions = tuple(consistent_regions(statistic, 0.0))
    partial = Attribution("x.png", (), "partial", ("taesd",), regions=regions,
                          local_map=statistic, local_threshold=0.0)  # fmt: skip
    local = _localization(partial)
    assert (local["model"], local["width"], local["height"]) == ("taesd", 60, 40)
    assert local["regions"] == [{"box": (20, 10, 50, 30), "share": 0.25}]
    header, data = local["overlay"].split(",", 1)
    overlay = Image.open(io.BytesIO(base64.b64decode(data)))
    assert header == "data:image/png;base64" and overlay.size == (60, 40)
    alpha = np.asarray(overlay)[..., 3]
    assert alpha[20, 30] > alpha[0, 0] > 0  # the consistent region stands out, the rest shows
    assert _localization(Attribution("y.png", (), "none")) is None


def test_case_records_hold_the_file_facts_and_download_as_json_and_csv(
    client, tiny_calibration, made_images
):
    import csv
    import hashlib

    import aedr

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS 5D"
    buffer = io.BytesIO()
    Image.fromarray(made_images[11]).save(buffer, "JPEG", quality=80, exif=exif)
    data = buffer.getvalue()
    jpeg = post(client, ("camera.jpg", data, "image/jpeg")).json()["results"][0]
    png = post(client, ("made.png", png_bytes(made_images[10]), "image/png")).json()["results"][0]
    facts = jpeg["file"]
    assert facts["sha256"] == hashlib.sha256(data).hexdigest() and facts["bytes"] == len(data)
    assert (facts["width"], facts["height"], facts["format"]) == (64, 64, "JPEG")
    assert facts["jpeg_quality"] == 80 and facts["exif"]["camera model"] == "EOS 5D"
    assert facts["c2pa"]["status"] in ("absent", "not checked")
    assert jpeg["tool"] == f"aedr {aedr.__version__}" and jpeg["uploaded"].endswith("+00:00")
    (identity,) = jpeg["calibrations"]
    assert identity["calibration_digest"] == tiny_calibration.content_digest()
    assert identity["n"] == tiny_calibration.n and identity["autoencoder"]

    one = client.get("/api/records", params={"id": jpeg["id"]})
    assert one.status_code == 200 and one.json() == [jpeg]
    assert "attachment" in one.headers["content-disposition"]
    batch = client.get("/api/records", params={"id": [jpeg["id"], png["id"]], "format": "csv"})
    assert batch.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(batch.text)))
    assert [r["filename"] for r in rows] == ["camera.jpg", "made.png"]
    assert rows[0]["sha256"] == facts["sha256"] and rows[0]["jpeg_quality"] == "80"
    assert float(rows[1]["signal"]) == pytest.approx(png["rows"][0]["signal"])
    assert rows[1]["verdict"] == png["verdict"] and rows[1]["calibration_n"] == str(identity["n"])
    assert client.get("/api/records", params={"id": "0" * 32}).status_code == 404
    assert client.get("/api/records", params={"id": jpeg["id"], "format": "xml"}).status_code == 422

    person = client.get(f"/results/{jpeg['id']}")
    assert person.status_code == 200 and person.text == client.get("/").text
    favicon = client.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"] == "image/svg+xml"


def test_results_outlive_a_restart(random_tiny, tiny_calibration, made_images, tmp_path):
    first = make_service(random_tiny, tiny_calibration, tmp_path)
    with TestClient(create_app(first), base_url=LOCAL) as client:
        result = post(client, ("a.png", png_bytes(made_images[11]), "image/png")).json()
    result_id = result["results"][0]["id"]
    second = make_service(random_tiny, tiny_calibration, tmp_path)  # the same store file
    with TestClient(create_app(second), base_url=LOCAL) as client:
        assert client.get(f"/api/results/{result_id}").json() == result["results"][0]


def test_calibrations_with_negatives_state_the_false_attribution(
    random_tiny, tiny_calibration, made_images, tmp_path
):
    from aedr.decide.calibration import calibrate

    # the same own measurements, with four negatives of which the threshold accepts one
    own = [{"measurement": "reconstruction", "loss1": s * 0.01, "loss2": 0.01,
            "homogeneity": 1.0, "provenance": tiny_calibration.provenance, "error": ""}
           for s in tiny_calibration.signals]  # fmt: skip
    scale = tiny_calibration.threshold
    records = [{**loss_record(f * scale * 0.01, 0.01, 1.0), "content_sha256": f"k{f}",
                "grey": f == 30.0} for f in (0.5, 10.0, 20.0, 30.0)]  # fmt: skip
    with_negatives = calibrate(own, "random-tiny", 0.05, "aedr", negatives=records,
                               negative_sources=["test photos"])  # fmt: skip
    assert with_negatives.threshold == pytest.approx(scale)
    service = make_service(random_tiny, with_negatives, tmp_path)
    with TestClient(create_app(service), base_url=LOCAL) as client:
        (model,) = client.get("/api/models").json()
        assert model["negatives"] == {
            "n": 4, "sources": ["test photos"], "false_acceptance": 0.25,
            "by_kind": {"in colour": {"false_acceptance": 1 / 3, "n": 3},
                        "grey": {"false_acceptance": 0.0, "n": 1}},
        }  # fmt: skip
        (result,) = post(client, ("m.png", png_bytes(made_images[11]), "image/png")).json()[
            "results"
        ]
    family = result["false_attribution"]
    # a colour upload: counted on the negatives in colour
    assert family["rate"] == 1 / 3 and family["exact"] and "1 of 3" in family["description"]
    assert result["rows"][0]["false_acceptance"] == 1 / 3
    assert "1 of 3 negative images" in result["explanation"]


def test_a_jpeg_upload_is_decided_and_plotted_at_its_quality(random_tiny, made_images, tmp_path):
    from aedr.decide.calibration import fit_jpeg_thresholds

    for folder in ("png", "jpg"):
        (tmp_path / folder).mkdir()
    # distinct photos: the random decoder's images are so dark that JPEG 60 makes them identical
    for index in range(6):
        rgb = smooth_image(100 + index, (64, 64))
        Image.fromarray(rgb).save(tmp_path / "png" / f"{index}.png")
        Image.fromarray(rgb).save(tmp_path / "jpg" / f"{index}.jpg", quality=60)
    scorer = Scorer([random_tiny])
    clean = calibrate_images(scorer, [tmp_path / "png"], "aedr", default_negatives=False)
    clean = clean.calibration
    jpeg = [m.as_dict() for m in scorer.score_paths([tmp_path / "jpg"])]
    calibration = fit_jpeg_thresholds(clean, {60: jpeg})
    service = make_service(random_tiny, calibration, tmp_path)
    result = service.attribute("x.jpg", png_bytes(made_images[11], "JPEG"))  # quality 75
    (row,) = result["rows"]
    assert row["threshold_quality"] == 60 and "fitted for its quality" in result["caution"]
    assert row["threshold"] == calibration.at_jpeg_quality(60).threshold != clean.threshold
    (model,) = service.models()
    assert model["jpeg_signals"] == {"60": calibration.at_jpeg_quality(60).signals}
    png = service.attribute("x.png", png_bytes(made_images[11]))
    assert png["rows"][0]["threshold_quality"] is None


def test_head_and_options_answer_and_record_batches_are_bounded(client):
    from aedr.server import MAX_RECORD_IDS

    head = client.head("/")
    assert head.status_code == 200 and head.content == b""
    options = client.options("/api/attribute")
    assert options.status_code == 204 and "POST" in options.headers["allow"]
    assert "access-control-allow-origin" not in options.headers
    many = [("id", "0" * 32)] * (MAX_RECORD_IDS + 1)
    refused = client.get("/api/records", params=many)
    assert refused.status_code == 422 and f"at most {MAX_RECORD_IDS}" in refused.json()["detail"]


def test_every_answer_carries_the_security_headers_and_docs_load_nothing_foreign(client):
    import base64
    import hashlib
    import re

    page = client.get("/").text
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    for path in ("/", "/api/health", "/api/results/" + "0" * 32, "/docs", "/openapi.json"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["x-frame-options"] == "DENY", path
        policy = headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy, path
    policy = client.get("/").headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in policy  # the page's own script, nothing else
    docs = client.get("/docs").text
    assert "/api/attribute" in docs and "<script" not in docs and "cdn" not in docs.lower()
    answers = client.get("/openapi.json").json()["paths"]["/api/attribute"]["post"]["responses"]
    assert {"200", "408", "413", "415", "422", "503"} <= set(answers)


def test_uploads_beyond_the_pending_limit_get_503_at_once(client, service):
    service.pending = service.limits.max_pending  # that many uploads under way
    response = post(client, ("a.png", png_bytes(smooth_image(1)), "image/png"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    service.pending = 0
    assert post(client, ("a.png", png_bytes(smooth_image(1)), "image/png")).status_code == 200


def test_a_body_that_arrives_too_slowly_is_refused():
    import asyncio

    from aedr.server import _BodyTooSlow, _capped

    async def trickle():
        for _ in range(100):
            await asyncio.sleep(0.05)
            yield b"x"

    async def read(seconds):
        return [chunk async for chunk in _capped(trickle(), 10**6, seconds)]

    with pytest.raises(_BodyTooSlow):
        asyncio.run(read(0.5))
    assert len(asyncio.run(read(30))) == 100


def test_uploads_are_written_for_their_owner_only(client, service, monkeypatch):
    import os

    modes = []
    scored = service.attributor.attribute_file

    def attribute_file(path):
        modes.append(os.stat(path).st_mode & 0o777)
        return scored(path)

    monkeypatch.setattr(service.attributor, "attribute_file", attribute_file)
    post(client, ("a.png", png_bytes(smooth_image(2)), "image/png"))
    assert modes == [0o600]


def test_results_expire_after_the_days_kept(random_tiny, tiny_calibration, made_images, tmp_path):
    service = make_service(random_tiny, tiny_calibration, tmp_path, keep_days=30)
    with TestClient(create_app(service), base_url=LOCAL) as client:
        old, new = (post(client, (f"{n}.png", png_bytes(made_images[i]), "image/png"))
                    .json()["results"][0]["id"] for n, i in (("old", 10), ("new", 11)))  # fmt: skip
        service.store._execute(
            "UPDATE results SET created = datetime('now', '-31 days') WHERE id=?", (old,)
        )
        assert client.get(f"/api/results/{old}").status_code == 404  # expired: not served
        assert client.get(f"/api/results/{new}").status_code == 200
    again = make_service(random_tiny, tiny_calibration, tmp_path, keep_days=30)  # deletes it
    count = again.store._execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert count == 1


def test_case_records_are_sealed_and_verify_with_the_servers_key(
    random_tiny, tiny_calibration, made_images, tmp_path
):
    from aedr.seals import create_keys, load_public_key, load_signing_key
    from aedr.workflows import verify_file

    create_keys(tmp_path / "server")
    service = make_service(random_tiny, tiny_calibration, tmp_path)
    service.signing_key = load_signing_key(tmp_path / "server.key")
    with TestClient(create_app(service), base_url=LOCAL) as client:
        result = post(client, ("a.png", png_bytes(made_images[11]), "image/png")).json()
        result_id = result["results"][0]["id"]
        records = client.get("/api/records", params={"id": result_id}).content
        csv_text = client.get("/api/records", params={"id": result_id, "format": "csv"}).text
    (tmp_path / "records.json").write_bytes(records)
    trusted = [load_public_key(tmp_path / "server.pub")]
    assert [c.ok for c in verify_file(tmp_path / "records.json", trusted)] == [True]
    digest = result["results"][0]["seal"]["digest"]
    assert digest in csv_text  # the CSV names the record it was made from
    edited = records.replace(b'"a.png"', b'"b.png"')
    (tmp_path / "edited.json").write_bytes(edited)
    assert [c.ok for c in verify_file(tmp_path / "edited.json", trusted)] == [False]


def test_kept_results_are_listed_searched_annotated_and_deleted(
    client, service, made_images, tmp_path
):
    from aedr.workflows import verify_file

    sent = {}
    for name, rgb in (("first.png", made_images[9]), ("second.png", made_images[10]),
                      ("third.png", made_images[11])):  # fmt: skip
        sent[name] = png_bytes(rgb)
        post(client, (name, sent[name], "image/png"))
    listed = client.get("/api/results").json()
    assert [r["filename"] for r in listed] == ["third.png", "second.png", "first.png"]
    ids = {r["filename"]: r["id"] for r in listed}
    sha = listed[1]["sha256"]
    assert [r["filename"] for r in client.get("/api/results", params={"text": "SECOND"}).json()] \
        == ["second.png"]  # fmt: skip
    assert [r["id"] for r in client.get("/api/results", params={"text": sha[5:20]}).json()] \
        == [ids["second.png"]]  # fmt: skip
    verdict = listed[0]["verdict"]
    chosen = client.get("/api/results", params={"verdict": verdict}).json()
    assert ids["third.png"] in [r["id"] for r in chosen]
    assert all(r["verdict"] == verdict for r in chosen)
    assert client.get("/api/results", params={"verdict": "no-such-model"}).json() == []

    (drawn,) = client.get(f"/api/results/{ids['first.png']}/maps").json()  # on demand
    assert (drawn["model"], drawn["width"], drawn["height"]) == ("random-tiny", 64, 64)
    assert drawn["overlay"].startswith("data:image/png;base64,") and drawn["regions"] == []
    assert drawn["threshold"] is None  # this calibration fitted no local threshold
    image = client.get(f"/api/results/{ids['first.png']}/image")
    assert image.content == sent["first.png"] and image.headers["content-type"] == "image/png"
    note = {"case": "C-2026-114", "note": "seized phone, folder DCIM"}
    assert client.patch(f"/api/results/{ids['first.png']}", json=note).json() == note
    record = client.get(f"/api/results/{ids['first.png']}").json()
    assert record["annotation"] == note and record["image_kept"] is True
    assert [r["id"] for r in client.get("/api/results", params={"text": "c-2026"}).json()] == [
        ids["first.png"]
    ]
    (tmp_path / "annotated.json").write_text(__import__("json").dumps(record))
    assert [c.ok for c in verify_file(tmp_path / "annotated.json")] == [True]  # seal unchanged
    rows = client.get("/api/records", params={"id": ids["first.png"], "format": "csv"}).text
    assert "C-2026-114" in rows and "seized phone" in rows
    too_long = client.patch(f"/api/results/{ids['first.png']}", json={"note": "x" * 5000})
    assert too_long.status_code == 422 and isinstance(too_long.json()["detail"], str)

    assert client.delete(f"/api/results/{ids['first.png']}").status_code == 204
    assert client.get(f"/api/results/{ids['first.png']}").status_code == 404
    assert client.get(f"/api/results/{ids['first.png']}/image").status_code == 404
    assert client.delete(f"/api/results/{ids['first.png']}").status_code == 404
    assert ids["first.png"] not in [r["id"] for r in client.get("/api/results").json()]
    assert service.store.get_result(ids["first.png"]) is None
    assert service.store.result_image(ids["first.png"]) is None
    assert client.get(f"/api/results/{ids['second.png']}").status_code == 200


def test_hashes_only_keeps_no_image(random_tiny, tiny_calibration, made_images, tmp_path):
    service = make_service(random_tiny, tiny_calibration, tmp_path, keep_images=False)
    with TestClient(create_app(service), base_url=LOCAL) as client:
        result = post(client, ("a.png", png_bytes(made_images[11]), "image/png")).json()
        result_id = result["results"][0]["id"]
        assert client.get(f"/api/results/{result_id}/image").status_code == 404
        assert client.get(f"/api/results/{result_id}/maps").status_code == 404
        record = client.get(f"/api/results/{result_id}").json()
        listed = client.get("/api/results").json()
        assert service.store.result_image(result_id) is None
    assert record["image_kept"] is False and record["settings"]["keep_images"] is False
    assert record["file"]["sha256"] and listed[0]["image_kept"] is False


def test_errors_share_one_shape_and_the_schema_documents_it(client):
    answers = [
        client.get("/api/results", params={"limit": 0}),
        client.get("/api/records", params={"format": "xml", "id": "0" * 32}),
        client.get("/api/results/not-an-id"),
        client.get("/api/results/" + "0" * 32 + "/image"),
        client.delete("/api/results/" + "0" * 32),
        client.post("/api/attribute", data={"x": "1"}),
    ]
    assert [a.status_code for a in answers] == [422, 422, 404, 404, 404, 415]
    for answer in answers:
        assert list(answer.json()) == ["detail"] and isinstance(answer.json()["detail"], str)
    assert "limit" in answers[0].json()["detail"]
    schema = client.get("/openapi.json").json()
    shape = {"$ref": "#/components/schemas/ErrorBody"}
    for path, method, code in (("/api/attribute", "post", "413"), ("/api/results", "get", "422"),
                               ("/api/results/{result_id}", "delete", "404")):  # fmt: skip
        content = schema["paths"][path][method]["responses"][code]["content"]
        assert content["application/json"]["schema"] == shape, (path, method, code)
    page = client.get("/results/not-an-id")
    assert page.status_code == 404 and page.text == client.get("/").text
    assert client.get("/history").text == client.get("/").text


def test_case_records_carry_settings_resolution_and_appended_data(client, made_images):
    import csv

    data = png_bytes(made_images[11]) + b"PK\x03\x04" + b"\0" * 60  # a zip's start after IEND
    result = post(client, ("appended.png", data, "image/png")).json()["results"][0]
    assert result["file"]["appended_bytes"] == 64
    (row,) = result["rows"]
    measured = result["settings"]["measurement"][row["model"]]
    assert (measured["dtype"], measured["device"]) == ("fp32", "cpu")
    assert measured["robust"] and measured["alignment"] == "crop"
    assert result["settings"]["max_false_attribution"] is None
    n = result["calibrations"][0]["n"]
    assert result["calibrations"][0]["caution"].startswith(f"calibrated on only {n} images")
    assert row["p_value_resolution"] == pytest.approx(1 / (n + 1))
    text = client.get("/api/records", params={"id": result["id"], "format": "csv"}).text
    (line,) = csv.DictReader(io.StringIO(text))
    assert line["appended_bytes"] == "64" and line["dtype"] == "fp32"
    assert float(line["p_value_resolution"]) == pytest.approx(1 / (n + 1))


def test_csv_rows_carry_the_partial_verdicts_regions_and_metadata():
    from aedr.server import record_rows

    result = {
        "id": "a" * 32, "filename": "x.png",
        "rows": [{"model": "taesd", "verdict": "partial"}, {"model": "taef1"}],
        "file": {"png_text": {"parameters": "a fox"}, "exif": {"software": "GIMP"}},
        "localization": {"model": "taesd", "threshold": 0.7,
                         "regions": [{"box": [20, 10, 50, 30], "share": 0.25}]},
        "annotation": {"case": "C-1"},
    }  # fmt: skip
    taesd, taef1 = record_rows(result)
    assert taesd["regions"] == "25% x 20-50 y 10-30" and taesd["local_threshold"] == 0.7
    assert taef1["regions"] is None and taef1["local_threshold"] is None
    assert taesd["metadata"] == "parameters: a fox | EXIF software: GIMP"
    assert taesd["case"] == "C-1" and taesd["note"] is None
