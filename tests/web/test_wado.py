"""WADO-RS against a real node, every call through dicomweb-client: instances as stored,
metadata and bulk data, frames, rendered images and thumbnails."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.dataset import Dataset

from tests._peers import test_files
from tests._synthetic import ct_instance, to_bytes

NAMES = ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm", "MR_small_bigendian.dcm",
         "test-SR.dcm", "emri_small.dcm"]


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    found = {f.name: f for f in test_files(include_pydicom_data=True) if f.name in NAMES}
    missing = set(NAMES) - set(found) - {"emri_small.dcm"}  # pydicom-data is optional
    assert not missing, missing
    return found


@pytest.fixture(scope="module")
def web_node(tmp_path_factory: pytest.TempPathFactory, files: dict[str, Path],
             module_catalog_url: str | None) -> Iterator[object]:
    from tests.conftest import start_node

    node = start_node(tmp_path_factory.mktemp("wado-node"), None,
                      catalog_url=module_catalog_url)
    for path in files.values():
        node.services.ingest.store(path.read_bytes(), source="TEST")
    for photometric, uid in (("MONOCHROME2", "1.2.826.0.1.7.2"), ("MONOCHROME1", "1.2.826.0.1.7.1")):
        ds = ct_instance(study_uid="1.2.826.0.1.7", series_uid=uid, patient_id="PX", size=32)
        ds.PhotometricInterpretation = photometric
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid + ".1"
        node.services.ingest.store(to_bytes(ds), source="TEST")
    yield node
    node.stop()


@pytest.fixture
def client(web_node) -> DICOMwebClient:  # type: ignore[no-untyped-def]
    return DICOMwebClient(web_node.dicomweb_url)


def _uids(path: Path) -> tuple[str, str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def _problem(call) -> dict:  # type: ignore[no-untyped-def,type-arg]
    with pytest.raises(requests.HTTPError) as info:
        call()
    assert info.value.response.headers["content-type"].startswith("application/problem+json")
    return info.value.response.json()  # type: ignore[no-any-return]


def _raw_parts(client: DICOMwebClient, url: str) -> list[bytes]:
    response = client._http_get(url, headers={"Accept": 'multipart/related; '
                                                        'type="application/dicom"'})
    return list(client._decode_multipart_message(response, stream=False))


# --------------------------------------------------------------------------- retrieve


@pytest.mark.parametrize("name", ["CT_small.dcm", "JPEG2000.dcm", "SC_rgb_rle_2frame.dcm",
                                  "MR_small_bigendian.dcm"])
def test_instance_comes_back_byte_for_byte(client: DICOMwebClient, files: dict[str, Path],
                                           name: str) -> None:
    study, series, sop = _uids(files[name])
    ds = client.retrieve_instance(study, series, sop)
    original = pydicom.dcmread(files[name])
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.SOPInstanceUID == sop and ds.PixelData == original.PixelData
    (raw,) = _raw_parts(client, f"{client.base_url}/studies/{study}/series/{series}"
                                f"/instances/{sop}")
    assert raw == files[name].read_bytes()


def test_series_and_study(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["SC_rgb_rle_2frame.dcm"])
    assert [d.SOPInstanceUID for d in client.retrieve_series(study, series)] == [sop]
    in_study = {str(d.SOPInstanceUID) for d in client.retrieve_study("1.2.826.0.1.7")}
    assert in_study == {"1.2.826.0.1.7.1.1", "1.2.826.0.1.7.2.1"}


def test_iter_study_streams(client: DICOMwebClient) -> None:
    got = [str(d.SOPInstanceUID) for d in client.iter_study("1.2.826.0.1.7")]
    assert sorted(got) == ["1.2.826.0.1.7.1.1", "1.2.826.0.1.7.2.1"]


def test_specific_transfer_syntax_is_refused_for_a_compressed_instance(
        client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["JPEG2000.dcm"])
    problem = _problem(lambda: client.retrieve_instance(
        study, series, sop, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)))
    assert problem["status"] == 406
    assert problem["detail"] == (
        'this node returns instances as stored: ask with Accept: multipart/related; '
        'type="application/dicom"; transfer-syntax=* (stored transfer syntaxes: '
        '1.2.840.10008.1.2.4.91)')
    # the stored syntax itself, or *, is fine
    assert client.retrieve_instance(study, series, sop, media_types=(
        ("application/dicom", "1.2.840.10008.1.2.4.91"),)).SOPInstanceUID == sop
    assert client.retrieve_instance(study, series, sop, media_types=(
        ("application/dicom", "*"),)).SOPInstanceUID == sop


def test_unknown_uids_are_404(client: DICOMwebClient, files: dict[str, Path]) -> None:
    problem = _problem(lambda: client.retrieve_study("1.2.3.4.5"))
    assert problem["detail"] == "no study 1.2.3.4.5 is stored on this node"
    study, series, _ = _uids(files["CT_small.dcm"])
    problem = _problem(lambda: client.retrieve_series(study, "9.9.9"))
    assert problem["detail"] == f"no series 9.9.9 of study {study} is stored on this node"
    problem = _problem(lambda: client.retrieve_instance(study, series, "9.9.9"))
    assert problem["detail"] == (f"no instance 9.9.9 of series {series} of study {study} "
                                 "is stored on this node")


# --------------------------------------------------------------------------- metadata


def test_metadata_with_bulk_data_uri(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["CT_small.dcm"])
    meta = client.retrieve_instance_metadata(study, series, sop)
    ds = Dataset.from_json(meta)
    assert ds.SOPInstanceUID == sop and ds.Rows == 128
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.endswith(f"/instances/{sop}/bulk/7FE00010")
    # dicomweb-client sends a Host header without the port, so the node's absolute URIs
    # lack it too: take the path (a node with [http] public_url gives full URIs)
    (pixels,) = client.retrieve_bulkdata(client.base_url + uri.split("/dicom-web", 1)[1])
    assert pixels == pydicom.dcmread(files["CT_small.dcm"]).PixelData


def test_series_and_study_metadata(client: DICOMwebClient) -> None:
    study_meta = client.retrieve_study_metadata("1.2.826.0.1.7")
    assert {m["00080018"]["Value"][0] for m in study_meta} == {"1.2.826.0.1.7.1.1",
                                                               "1.2.826.0.1.7.2.1"}
    (series_meta,) = client.retrieve_series_metadata("1.2.826.0.1.7", "1.2.826.0.1.7.1")
    assert series_meta["00280004"]["Value"] == ["MONOCHROME1"]


def test_sr_metadata_has_no_pixel_data(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["test-SR.dcm"])
    meta = client.retrieve_instance_metadata(study, series, sop)
    assert "7FE00010" not in meta and meta["0040A730"]["vr"] == "SQ"  # ContentSequence


# --------------------------------------------------------------------------- frames


def test_uncompressed_frame(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["CT_small.dcm"])
    (frame,) = client.retrieve_instance_frames(study, series, sop, [1])
    assert frame == pydicom.dcmread(files["CT_small.dcm"]).PixelData


def test_compressed_frames_come_back_decoded(client: DICOMwebClient,
                                             files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["SC_rgb_rle_2frame.dcm"])
    frames = client.retrieve_instance_frames(study, series, sop, [2, 1])
    expected = pydicom.dcmread(files["SC_rgb_rle_2frame.dcm"]).pixel_array
    assert frames[0] == expected[1].tobytes() and frames[1] == expected[0].tobytes()


def test_big_endian_frame_comes_back_little_endian(client: DICOMwebClient,
                                                   files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["MR_small_bigendian.dcm"])
    (frame,) = client.retrieve_instance_frames(study, series, sop, [1])
    expected = pydicom.dcmread(files["MR_small_bigendian.dcm"]).pixel_array
    assert np.array_equal(np.frombuffer(frame, dtype="<i2").reshape(expected.shape), expected)


def test_frame_errors(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["SC_rgb_rle_2frame.dcm"])
    problem = _problem(lambda: client.retrieve_instance_frames(study, series, sop, [3]))
    assert problem["detail"] == "frame 3 does not exist: the instance has 2 frames"
    url = f"{client.base_url}/studies/{study}/series/{series}/instances/{sop}/frames/0,x"
    problem = _problem(lambda: client._http_get(url))
    assert problem["detail"] == ("frame list '0,x' is not valid: use frame numbers from 1, "
                                 "separated by commas (e.g. 1,3)")
    study, series, sop = _uids(files["test-SR.dcm"])
    problem = _problem(lambda: client.retrieve_instance_frames(study, series, sop, [1]))
    assert problem["detail"] == f"instance {sop} has no pixel data"


# --------------------------------------------------------------------------- rendered


def _image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


@pytest.mark.parametrize(("media_type", "pil_format"), [("image/png", "PNG"),
                                                        ("image/jpeg", "JPEG")])
def test_rendered_by_accept(client: DICOMwebClient, files: dict[str, Path], media_type: str,
                            pil_format: str) -> None:
    study, series, sop = _uids(files["JPEG2000.dcm"])
    data = client.retrieve_instance_rendered(study, series, sop, media_types=(media_type,))
    image = _image(data)
    assert image.format == pil_format and image.size == (256, 1024)  # columns, rows


def test_rendered_by_accept_parameter_with_viewport(client: DICOMwebClient,
                                                    files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["CT_small.dcm"])
    data = client.retrieve_instance_rendered(study, series, sop,
                                             params={"accept": "image/png",
                                                     "viewport": "64,32"})
    image = _image(data)
    assert image.format == "PNG" and image.size == (32, 32)  # fitted, aspect kept


def _hounsfield(path: Path) -> np.ndarray:
    from pydicom.pixels.processing import apply_modality_lut

    ds = pydicom.dcmread(path)
    return np.asarray(apply_modality_lut(ds.pixel_array, ds), dtype=np.float64)


@pytest.mark.parametrize(("window", "center", "width", "function"), [
    ("200,10", 200.0, 10.0, "LINEAR"),
    ("40,400,linear-exact", 40.0, 400.0, "LINEAR_EXACT"),
    ("40,400,sigmoid", 40.0, 400.0, "SIGMOID"),
    ("200.5,0.5", 200.5, 0.5, "LINEAR"),
])
def test_rendered_window_is_the_indexers(client: DICOMwebClient, files: dict[str, Path],
                                         window: str, center: float, width: float,
                                         function: str) -> None:
    """The rendered grey levels are exactly the indexer's VOI LUT function of the
    modality values (indexer.normalise.apply_window), rounded to 8 bits."""
    from indexer.normalise import apply_window

    study, series, sop = _uids(files["CT_small.dcm"])
    data = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",),
                                             params={"window": window})
    rendered = np.asarray(_image(data))
    unit = apply_window(_hounsfield(files["CT_small.dcm"]), center, width, function)
    expected = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    assert rendered.dtype == np.uint8 and rendered.shape == expected.shape
    assert np.array_equal(rendered, expected)


def test_rendered_window_of_width_one_is_the_indexers(client: DICOMwebClient,
                                                      files: dict[str, Path]) -> None:
    """Width 1 (LINEAR), where the standard's formula is a step and a second windowing
    implementation once disagreed with the indexer's: a pixel at the centre is mid-grey,
    as the indexer embeds it."""
    from indexer.normalise import apply_window

    hu = _hounsfield(files["CT_small.dcm"])
    center = float(np.median(hu))  # a value the image holds
    assert (hu == center).any()
    study, series, sop = _uids(files["CT_small.dcm"])
    data = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",),
                                             params={"window": f"{center},1"})
    rendered = np.asarray(_image(data))
    assert (rendered[hu == center] == 128).all()
    assert (rendered[hu < center] == 0).all() and (rendered[hu > center] == 255).all()
    unit = apply_window(hu, center, 1.0, "LINEAR")
    expected = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    assert rendered.dtype == np.uint8 and rendered.shape == expected.shape
    assert np.array_equal(rendered, expected)


def test_rendered_window_and_quality(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["CT_small.dcm"])

    def grey(**params: str) -> np.ndarray:
        data = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",),
                                                 params=params)
        return np.asarray(_image(data))

    narrow, wide = grey(window="200,10"), grey(window="200,4000,linear-exact")
    # PS3.3 C.11.2.1.2.1 (linear, c=200, w=10): at or below 195 black, above 204 white
    hu = _hounsfield(files["CT_small.dcm"])
    assert narrow.shape == hu.shape
    assert (hu <= 195).any() and (hu > 204).any() and ((hu > 195) & (hu <= 204)).any()
    assert (narrow[hu <= 195] == 0).all() and (narrow[hu > 204] == 255).all()
    inside = narrow[(hu > 195) & (hu <= 204)]
    assert ((inside > 0) & (inside < 255)).any()
    assert (narrow == 255).mean() > (wide == 255).mean()  # a narrow window saturates more
    sigmoid = grey(window="200,400,sigmoid")
    assert 0 < sigmoid.mean() < 255
    small = client.retrieve_instance_rendered(study, series, sop, media_types=("image/jpeg",),
                                              params={"quality": "5"})
    large = client.retrieve_instance_rendered(study, series, sop, media_types=("image/jpeg",),
                                              params={"quality": "100"})
    assert len(small) < len(large)


def test_monochrome1_is_inverted(client: DICOMwebClient) -> None:
    def grey(series: str) -> np.ndarray:
        data = client.retrieve_instance_rendered("1.2.826.0.1.7", series, series + ".1",
                                                 media_types=("image/png",))
        return np.asarray(_image(data)).astype(int)

    assert np.abs(grey("1.2.826.0.1.7.1") + grey("1.2.826.0.1.7.2") - 255).max() <= 1


def test_rendered_colour_frame_and_series(client: DICOMwebClient,
                                          files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["SC_rgb_rle_2frame.dcm"])
    data = client.retrieve_instance_frames_rendered(study, series, sop, [2],
                                                    media_types=("image/png",))
    image = _image(data)
    assert image.mode == "RGB" and image.size == (100, 100)
    expected = pydicom.dcmread(files["SC_rgb_rle_2frame.dcm"]).pixel_array[1]
    assert np.array_equal(np.asarray(image), expected)
    series_image = _image(client.retrieve_series_rendered(study, series,
                                                          media_types=("image/jpeg",)))
    assert series_image.format == "JPEG"


def test_rendered_errors(client: DICOMwebClient, files: dict[str, Path]) -> None:
    study, series, sop = _uids(files["CT_small.dcm"])

    def problem(**params: str) -> dict:  # type: ignore[type-arg]
        return _problem(lambda: client.retrieve_instance_rendered(
            study, series, sop, media_types=("image/png",), params=params))

    assert problem(window="abc")["detail"] == (
        "window 'abc' is not valid: use window=center,width[,linear|linear-exact|sigmoid] "
        "with a width above 0")
    assert problem(window="40,0")["status"] == 400
    assert problem(viewport="0,10")["detail"] == (
        "viewport '0,10' is not valid: use viewport=width,height in pixels (1 to 4096)")
    assert problem(quality="0")["detail"] == ("quality '0' is not valid: use an integer "
                                              "from 1 to 100")
    gif = _problem(lambda: client.retrieve_instance_rendered(study, series, sop,
                                                             media_types=("image/gif",)))
    assert gif["status"] == 406
    assert gif["detail"] == ("rendered images are image/jpeg or image/png, not image/gif: "
                             "ask with Accept or accept=")
    s_study, s_series, s_sop = _uids(files["test-SR.dcm"])
    sr = _problem(lambda: client.retrieve_instance_rendered(s_study, s_series, s_sop,
                                                            media_types=("image/png",)))
    assert sr["detail"] == f"instance {s_sop} has no pixel data to render"


# --------------------------------------------------------------------------- thumbnails


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_thumbnail(client: DICOMwebClient, files: dict[str, Path], level: str) -> None:
    study, series, sop = _uids(files["JPEG2000.dcm"])
    url = f"{client.base_url}/studies/{study}"
    if level != "study":
        url += f"/series/{series}"
    if level == "instance":
        url += f"/instances/{sop}"
    image = _image(client._http_get(url + "/thumbnail", headers={"Accept": "image/jpeg"})
                   .content)
    assert image.format == "JPEG" and max(image.size) == 128


def test_thumbnail_of_a_study_without_images(client: DICOMwebClient,
                                             files: dict[str, Path]) -> None:
    study, series, _ = _uids(files["test-SR.dcm"])
    problem = _problem(lambda: client._http_get(
        f"{client.base_url}/studies/{study}/series/{series}/thumbnail"))
    assert problem["detail"] == "nothing here has pixel data to make a thumbnail from"
