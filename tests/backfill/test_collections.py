"""`precedent import collection`: a generated folder of labelled PNG/JPEG images becomes
Secondary Capture studies with reports — through the running node (an operation of its
admin API), or into the data folder, with its lock held, when the node is down. Text search and `precedent eval --labels` work on
it; importing again changes nothing; a broken image is a line in the summary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from node.data_folder import DataFolderLock, Owner, OwnerRoleValues, prepare
from node.storage import connect
from tests.backfill._cli import precedent
from tests.node._cli import one_line_error

pytestmark = pytest.mark.slow

SC = "1.2.840.10008.5.1.4.1.1.7"


def _picture(finding: str, k: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(k)
    y, x = np.mgrid[0:size, 0:size] / size
    base = 60 + 40 * np.exp(-((x - 0.5) ** 2 + (y - 0.5) ** 2) * 4)
    shape = {"pneumonia": 120 * (((x - 0.3) ** 2 + (y - 0.5) ** 2) < 0.03),
             "effusion": np.where(y > 0.7, 140.0, 0.0),
             "normal": 30 * np.sin(x * 25)}[finding]
    return np.clip(base + shape + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)


def _folder(root: Path) -> Path:
    """Three labelled sub-folders of 8-bit PNGs, a 16-bit PNG, an RGB JPEG and a broken
    PNG."""
    for finding in ("pneumonia", "effusion", "normal"):
        (root / finding).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(_picture(finding, k)).save(root / finding / f"{finding}-{k}.png")
    wide = (_picture("normal", 9).astype(np.uint16) * 200)
    Image.fromarray(wide).save(root / "normal" / "normal-16bit.png")
    rgb = np.stack([_picture("pneumonia", 7)] * 3, axis=-1)
    Image.fromarray(rgb).save(root / "pneumonia" / "pneumonia-colour.jpg")
    whole = (root / "effusion" / "effusion-0.png").read_bytes()
    (root / "effusion" / "effusion-broken.png").write_bytes(whole[: len(whole) // 2])
    return root


def test_import_through_the_running_node_is_searchable_evaluable_and_idempotent(
        tmp_path: Path, make_node) -> None:
    folder = _folder(tmp_path / "chest-set")
    node = make_node(http={"admin_token": "adm1n"})
    node.wait_model()
    data = ["--data-dir", str(node.data_dir)]
    first = precedent("import", "collection", str(folder), "--modality", "CR", node=node)
    assert first.returncode == 0, first.stderr
    assert "precedent: through the node (precedent serve, pid" in first.stderr
    assert first.stdout.startswith("collection chest-set: 15 images, 14 stored, 0 there "
                                   "already; 14 studies, 14 reports written")
    assert "effusion/effusion-broken.png: not a readable PNG/JPEG image" in first.stdout
    labels_file = node.data_dir / "collections" / "chest-set-labels.csv"
    assert f"evaluate: precedent eval --labels {labels_file}" in first.stdout

    conn = node.services.connections.get()
    rows = conn.execute("SELECT i.sop_class_uid, s.modality, i.source, i.study_instance_uid "
                        "FROM instances i JOIN series s USING (series_instance_uid)").fetchall()
    assert len(rows) == 14 and {(r[0], r[1], r[2]) for r in rows} == {
        (SC, "CR", "COLLECTION:chest-set")}
    node.wait_indexed()
    with node.http("adm1n") as http:
        pneumonia = [uid for uid, in conn.execute(
            "SELECT study_instance_uid FROM reports WHERE labels LIKE '%pneumonia%'")]
        assert len(pneumonia) == 5
        report = http.get(f"/dicom-web/studies/{pneumonia[0]}/report").json()
        assert report["labels"] == ["pneumonia"] and "Labels: pneumonia." in report["text"]
        found = http.get("/dicom-web/similar", params={"text": "pneumonia", "level": "study",
                                                      "hybrid": "true", "limit": 5})
        assert found.status_code == 200, found.text
        top = [item["0020000D"]["Value"][0] for item in found.json()]
        assert set(top[:3]) <= set(pneumonia), "BM25 puts the labelled studies first"

    evaluated = precedent("eval", "--labels", str(labels_file), "--k", "3", *data)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "precision@3" in evaluated.stdout and "queries" in evaluated.stdout

    # the colour JPEG and the 16-bit PNG kept their kind of pixels
    kinds = set()
    for (path,) in conn.execute("SELECT path FROM instances"):
        ds = pydicom.dcmread(node.data_dir / path)
        kinds.add((ds.PhotometricInterpretation, int(ds.BitsAllocated)))
        assert ds.Modality == "CR" and ds.PatientOrientation == ""
    assert kinds == {("MONOCHROME2", 8), ("MONOCHROME2", 16), ("RGB", 8)}

    before = conn.execute("SELECT study_instance_uid, updated_at FROM reports").fetchall()
    again = precedent("import", "collection", str(folder), "--modality", "CR", node=node)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("collection chest-set: 15 images, 0 stored, 14 there "
                                   "already; 14 studies, 0 reports written")
    assert conn.execute("SELECT count(*) FROM instances").fetchone()[0] == 14
    assert conn.execute("SELECT study_instance_uid, updated_at FROM reports").fetchall() == \
        before


def test_import_into_the_data_folder_with_labels_captions_and_patients(tmp_path: Path) -> None:
    folder = tmp_path / "roco"
    folder.mkdir()
    for name in ("x_P01_a.png", "x_P01_b.png", "x_P02_a.png", "x_P03_a.png"):
        Image.fromarray(_picture("normal", len(name))).save(folder / name)
    (folder / "labels.csv").write_text(
        "file,label,patient,study\n"
        "x_P01_a.png,fracture|wrist,,S1\n"
        "x_P01_b.png,fracture,,S1\n"
        "x_P02_a.png,normal,PAT-2,\n"
        "x_P03_a.png,fracture,,\n"
        "missing.png,normal,,\n")
    (folder / "captions.jsonl").write_text(
        json.dumps({"file": "x_P01_a.png", "caption": "Distal radius fracture."}) + "\n"
        + "{not json\n"
        + json.dumps({"image": "x_P03_a.png", "caption": "Scaphoid fracture, subtle."}) + "\n")
    data = ["--data-dir", str(tmp_path / "data")]
    args = ["import", "collection", str(folder), "--name", "wrists", "--labels",
            str(folder / "labels.csv"), "--captions", str(folder / "captions.jsonl"),
            "--patient-from", r"_(P\d+)_", "--modality", "DX", *data]
    result = precedent(*args)  # no node owns the folder: the command does it itself
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("collection wrists: 4 images, 4 stored, 0 there already;"
                                    " 3 studies, 3 reports written")
    assert "missing.png: listed in labels.csv (line 6) but not found" in result.stdout
    assert 'captions.jsonl line 2: not a JSON object with "file" and "caption"' in \
        result.stdout
    assert "the node is not running" in result.stderr

    conn = connect(tmp_path / "data" / "catalog.sqlite")
    studies = conn.execute(
        "SELECT s.study_instance_uid, s.patient_id, count(i.sop_instance_uid), r.text, r.labels"
        " FROM studies s JOIN instances i USING (study_instance_uid) "
        "LEFT JOIN reports r USING (study_instance_uid) GROUP BY s.study_instance_uid "
        "ORDER BY s.patient_id").fetchall()
    assert [(r[1], r[2]) for r in studies] == [("P01", 2), ("P03", 1), ("PAT-2", 1)]
    assert studies[0][3] == "Distal radius fracture.\nLabels: fracture, wrist."
    assert json.loads(studies[0][4]) == ["fracture", "wrist"]
    assert studies[1][3].startswith("Scaphoid fracture, subtle.")
    assert {r[0] for r in conn.execute("SELECT DISTINCT source FROM instances")} == \
        {"COLLECTION:wrists"}
    assert {r[0] for r in conn.execute("SELECT DISTINCT modality FROM series")} == {"DX"}
    uids = sorted(r[0] for r in conn.execute("SELECT sop_instance_uid FROM instances"))
    conn.close()

    again = precedent(*args)  # the same UIDs: nothing new
    assert again.returncode == 0, again.stderr
    assert "0 stored, 4 there already" in again.stdout
    conn = connect(tmp_path / "data" / "catalog.sqlite")
    assert sorted(r[0] for r in conn.execute("SELECT sop_instance_uid FROM instances")) == uids
    conn.close()

    missing = precedent("import", "collection", str(tmp_path / "nope"), *data)
    assert missing.returncode == 2
    assert "is not a folder of PNG/JPEG images" in one_line_error(missing)


def test_import_refuses_while_another_command_owns_the_data_folder(tmp_path: Path) -> None:
    """With the node down the import takes the folder's lock: never beside another
    writer."""
    folder = tmp_path / "set"
    (folder / "normal").mkdir(parents=True)
    Image.fromarray(_picture("normal", 1)).save(folder / "normal" / "a.png")
    data_dir = tmp_path / "data"
    prepare(data_dir)
    me = Owner(pid=os.getpid(), role=OwnerRoleValues.COMMAND, command="precedent index import")
    with DataFolderLock.acquire(data_dir, me):
        refused = precedent("import", "collection", str(folder), "--data-dir", str(data_dir))
    assert one_line_error(refused) == (
        f"precedent: the data folder {data_dir} is in use by `precedent index import` "
        f"(pid {os.getpid()}); wait for it to finish")
    assert not (data_dir / "catalog.sqlite").exists()


def test_import_route_is_an_operation_behind_the_admin_token(tmp_path: Path,
                                                            make_node) -> None:
    folder = _folder(tmp_path / "chest-set")
    node = make_node(no_model=True)
    with node.http() as anonymous:
        refused = anonymous.post("/admin/collections/import", json={"folder": str(folder)})
        assert refused.status_code == 401
    with node.http(node.admin_token) as admin:
        for body, detail in [
            ({"folder": "chest-set"}, "paths must be absolute on the node's machine: "
                                      "folder 'chest-set'"),
            ({"folder": str(tmp_path / "nope")}, "is not a folder of PNG/JPEG images"),
            ({"folder": str(folder), "modality": "C T"}, "--modality 'C T' is not a DICOM "
                                                         "modality"),
        ]:
            answer = admin.post("/admin/collections/import", json=body)
            assert answer.status_code == 400, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert detail in answer.json()["detail"]
        started = admin.post("/admin/collections/import",
                             json={"folder": str(folder), "name": "chest"})
        assert started.status_code == 202, started.text
        op = started.json()
        assert op["kind"] == "collection" and op["total"] == 15
        while op["state"] == "running":
            op = admin.get(f"/admin/operations/{op['id']}").json()
    assert op["state"] == "done" and op["done"] == 15, op
    assert op["result"]["collection"] == "chest" and op["result"]["stored"] == 14
    assert [p["file"] for p in op["result"]["problems"]] == ["effusion/effusion-broken.png"]
