"""Similar-case uploads are bounded by what they decode to, not only by their bytes.

Small files that decode to huge pictures (a PNG of zeros, a JPEG whose header says
20000×20000, an RLE-compressed DICOM image) are refused with a 413 naming the limit
before anything is decoded; uploads under the limit are answered; and when other uploads
hold the decoding budget, an upload waits briefly and then gets a 503 with Retry-After.
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom.uid import RLELossless, generate_uid

from node.errors import Busy
from node.retrieval import DecodeBudget, UploadLimits
from node.web import create_app
from tests._synthetic import ct_instance, to_bytes
from tests.conftest import RunningNode, start_node
from tests.web._helpers import PROBLEM_JSON, Catalogue, populate

LIMIT = 50_000_000  # the default [http] max_upload_pixels


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path,
        module_catalog_url: str | None) -> Iterator[Catalogue]:
    folder = tmp_path_factory.mktemp("uploads")
    node = start_node(folder / "node", tiny_model_dir,
                      catalog_url=module_catalog_url)
    try:
        yield populate(node, folder, n_studies=4)
    finally:
        node.stop()


def png_of_zeros(width: int, height: int, *, rgb: bool) -> bytes:
    """A valid PNG of ``width``×``height`` black pixels, compressed row by row (a few
    hundred KB for hundreds of megapixels; never held decoded)."""
    channels, colour_type = (3, 2) if rgb else (1, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0, then the samples
    idat = bytearray()
    for _ in range(height):
        idat += packer.compress(row)
    idat += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(idat))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 16×16 JPEG whose frame header (SOF0) says ``width``×``height``."""
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 128).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def rle_dicom(size: int) -> bytes:
    """An 8-bit ``size``×``size`` CT image, RLE Lossless: a few hundred KB."""
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PBOMB",
                     size=8)
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.compress(RLELossless, np.zeros((size, size), np.uint8))
    return to_bytes(ds)


def _post(url: str, body: bytes, content_type: str, **params: object) -> httpx.Response:
    return httpx.post(f"{url}/dicom-web/similar", params=params, content=body,
                      headers={"Content-Type": content_type}, timeout=120)


def _problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    return str(response.json()["detail"])


# ------------------------------------------------------------------ one upload


def test_a_png_of_900_megapixels_is_413_not_500(cat: Catalogue) -> None:
    bomb = png_of_zeros(30_000, 30_000, rgb=False)
    assert len(bomb) < 1_000_000
    detail = _problem(_post(cat.node.http_url, bomb, "image/png"), 413)
    assert detail == (
        "the uploaded PNG image (30000×30000) decodes to 900,000,000 pixel values; this "
        "node decodes at most 50,000,000 per upload ([http] max_upload_pixels): send a "
        "smaller image (fewer pixels, or one frame)")


def test_a_small_png_of_12000_squared_rgb_is_refused_before_decoding(cat: Catalogue) -> None:
    bomb = png_of_zeros(12_000, 12_000, rgb=True)
    assert len(bomb) < 500_000
    detail = _problem(_post(cat.node.http_url, bomb, "image/png"), 413)
    assert "432,000,000 pixel values" in detail and "[http] max_upload_pixels" in detail


def test_a_jpeg_header_of_20000_squared_is_413(cat: Catalogue) -> None:
    detail = _problem(_post(cat.node.http_url, jpeg_claiming(20_000, 20_000), "image/jpeg"),
                      413)
    assert detail.startswith("the uploaded JPEG image (20000×20000) decodes to "
                             "400,000,000 pixel values")


def test_a_compressed_dicom_image_over_the_limit_is_413(cat: Catalogue) -> None:
    bomb = rle_dicom(8_000)  # 64 megapixels in RLE
    assert len(bomb) < 2_000_000
    detail = _problem(_post(cat.node.http_url, bomb, "application/dicom"), 413)
    assert detail.startswith("the uploaded DICOM data set decodes to 64,000,000 pixel "
                             "values; this node decodes at most 50,000,000")


def test_multi_frame_dicom_counts_every_frame(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node(http={"max_upload_pixels": 3 * 32 * 32})
    ds = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PMF",
                     size=32)
    frames = np.stack([ds.pixel_array] * 4)
    ds.NumberOfFrames = 4
    ds.PixelData = frames.tobytes()
    detail = _problem(_post(node.http_url, to_bytes(ds), "application/dicom"), 413)
    assert "decodes to 4,096 pixel values; this node decodes at most 3,072" in detail


def test_uploads_up_to_the_limit_are_answered(make_node) -> None:  # type: ignore[no-untyped-def]
    node: RunningNode = make_node(http={"max_upload_pixels": 64 * 64 * 3})
    node.seed_demo(2, instances_per_study=1)
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(picture, "PNG")
    response = _post(node.http_url, picture.getvalue(), "image/png", limit=1)
    assert response.status_code == 200, response.text
    bigger = io.BytesIO()
    Image.new("RGB", (65, 64)).save(bigger, "PNG")
    detail = _problem(_post(node.http_url, bigger.getvalue(), "image/png"), 413)
    assert "decodes to 12,480 pixel values; this node decodes at most 12,288" in detail
    dicom = ct_instance(study_uid=generate_uid(), series_uid=generate_uid(), patient_id="PD",
                        size=64)
    response = _post(node.http_url, to_bytes(dicom), "application/dicom", limit=1)
    assert response.status_code == 200, response.text


def test_a_picture_that_is_neither_png_nor_jpeg_is_400(cat: Catalogue) -> None:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "GIF")
    detail = _problem(_post(cat.node.http_url, buffer.getvalue(), "image/png"), 400)
    assert detail == ("the uploaded PNG image cannot be decoded: it is neither a PNG nor "
                      "a JPEG file")


# ------------------------------------------------------------------ uploads together


def test_the_budget_makes_an_upload_wait_then_answers_busy() -> None:
    budget = DecodeBudget(pixels=100, wait_s=0)
    with budget.hold(60):
        assert budget.free == 40
        with budget.hold(40):
            assert budget.free == 0
        with pytest.raises(Busy) as info, budget.hold(41):
            pass
    assert info.value.http_status == 503 and info.value.headers["Retry-After"] == "1"
    assert budget.free == 100


def test_a_waiting_upload_goes_on_when_another_finishes() -> None:
    budget = DecodeBudget(pixels=100, wait_s=60)
    holding, release, done = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold(100):
            holding.set()
            release.wait(60)

    def second() -> None:
        with budget.hold(100):
            done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert holding.wait(60)
    threads[1].start()
    assert not done.is_set()  # the budget is held: the second upload waits
    release.set()
    for thread in threads:
        thread.join(60)
    assert done.is_set() and budget.free == 100


def test_concurrent_large_uploads_get_503_with_retry_after(cat: Catalogue) -> None:
    """While other uploads hold the decoding budget, the next one is told to come back."""
    app = create_app(cat.node.services)
    budget = DecodeBudget(pixels=2 * LIMIT, wait_s=0)
    app.state.upload_limits = UploadLimits(max_pixels=LIMIT, budget=budget)
    picture = io.BytesIO()
    Image.new("RGB", (64, 64)).save(picture, "PNG")
    with TestClient(app) as client:
        with budget.hold(2 * LIMIT - 64 * 64 * 3 + 1):  # two large uploads in progress
            response = client.post("/dicom-web/similar", content=picture.getvalue(),
                                   headers={"Content-Type": "image/png"})
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.json()["title"] == "Busy"
            assert response.json()["detail"].startswith(
                "the node is decoding as many uploaded pixels as it may at once")
        response = client.post("/dicom-web/similar", content=picture.getvalue(),
                               headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.text
