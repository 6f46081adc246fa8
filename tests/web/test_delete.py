"""DELETE of studies, series and instances: gone from the catalog, the queue, the index
and the disk; admin scope; clear answers for unknown or malformed UIDs."""

from __future__ import annotations

from dicomweb_client.api import DICOMwebClient


def test_delete_instance_then_study(make_node) -> None:
    node = make_node(http={"admin_token": "adm", "read_token": "rd"})
    node.wait_model()
    first, second = node.seed_demo(2, instances_per_study=2, seed=41)
    conn = node.services.connections.get()
    _, index_set = node.services.model.require()
    victim = first.datasets[0]
    path = node.data_dir / conn.execute(
        "SELECT path FROM instances WHERE sop_instance_uid=?",
        (str(victim.SOPInstanceUID),)).fetchone()[0]
    assert path.exists() and index_set.count("instance") == 4

    with node.http("rd") as reader:
        r = reader.delete(f"/dicom-web/studies/{first.study_instance_uid}")
        assert r.status_code == 403 and "use the admin token" in r.json()["detail"]
    with node.http("adm") as admin:
        url = (f"/dicom-web/studies/{first.study_instance_uid}/series/"
               f"{victim.SeriesInstanceUID}/instances/{victim.SOPInstanceUID}")
        assert admin.delete(url).status_code == 204
        assert not path.exists()
        assert index_set.count("instance") == 3
        assert index_set.get_vector("instance", str(victim.SOPInstanceUID)) is None
        again = admin.delete(url)
        assert again.status_code == 404
        assert again.headers["content-type"] == "application/problem+json"
        assert "no instance with these UIDs" in again.json()["detail"]
        bad = admin.delete("/dicom-web/studies/1.2.3/series/..%2F..")
        assert bad.status_code in (400, 404)

        assert admin.delete(f"/dicom-web/studies/{first.study_instance_uid}").status_code == 204
        client = DICOMwebClient(node.dicomweb_url, headers={"Authorization": "Bearer adm"})
        remaining = {ds["0020000D"]["Value"][0] for ds in client.search_for_studies()}
        assert remaining == {second.study_instance_uid}
        assert index_set.count("study") == 1
        assert conn.execute("SELECT count(*) FROM reports WHERE study_instance_uid=?",
                            (first.study_instance_uid,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM work").fetchone()[0] == 2
        r = admin.get(f"/dicom-web/studies/{second.study_instance_uid}/similar",
                      params={"excludePatient": "false"})
        assert r.status_code == 200 and r.json() == []
        assert not (node.data_dir / "dicom" / first.study_instance_uid).exists()
