"""One settings object: defaults < file < catalog (PUT /config/ae) < environment < flags;
wrong values stop start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest

from node.errors import SettingsError
from node.settings import Settings, catalog_notes, load_settings
from node.storage import aes, connect

EXAMPLE = Path(__file__).parents[2] / "conf" / "node.example.toml"


def test_precedence_file_env_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[node]\nae_title = "FROMFILE"\ndimse_port = 2000\n[http]\nport = 3000\n')
    monkeypatch.setenv("PRECEDENT_NODE__DIMSE_PORT", "2001")
    s = load_settings(config, {"http": {"port": 3001}})
    assert (s.node.ae_title, s.node.dimse_port, s.http.port) == ("FROMFILE", 2001, 3001)


def test_catalog_sits_between_the_file_and_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nae_title = "FROMFILE"\ndimse_port = 2000\n'
                      f'data_dir = "{tmp_path / "data"}"\n')
    asked: list[Path] = []

    def catalog(target: str | Path) -> Mapping[str, str]:
        asked.append(Path(target))
        return {"ae_title": "FROMREST", "dimse_port": "2002", "other": "ignored"}

    s = load_settings(config, catalog=catalog)
    assert asked == [tmp_path / "data" / "catalog.sqlite"]  # where the file points
    assert (s.node.ae_title, s.node.dimse_port) == ("FROMREST", 2002)
    assert catalog_notes(s) == [
        "node.ae_title = FROMREST from the catalog (set with PUT /config/ae; it overrides "
        "the config file)",
        "node.dimse_port = 2002 from the catalog (set with PUT /config/ae; it overrides "
        "the config file)",
    ]
    monkeypatch.setenv("PRECEDENT_NODE__DIMSE_PORT", "2001")
    s = load_settings(config, {"node": {"ae_title": "FROMFLAG"}}, catalog=catalog)
    assert (s.node.ae_title, s.node.dimse_port) == ("FROMFLAG", 2001)
    notes = catalog_notes(s)
    assert "the catalog's FROMREST (PUT /config/ae) is overridden" in notes[0]
    assert "PRECEDENT_NODE__DIMSE_PORT" in notes[1]
    # without a reader the catalog is no source at all
    assert load_settings(config).node.ae_title == "FROMFILE"
    assert catalog_notes(load_settings(config)) == []


def test_a_wrong_catalog_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, {"node": {"data_dir": tmp_path}},
                      catalog=lambda _: {"dimse_port": "99999"})
    assert "setting 'node.dimse_port'" in str(info.value)
    assert "PUT /config/ae" in str(info.value)


def _status(data_dir: Path, **env: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "node", "status", "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PRECEDENT_")} | env,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_every_command_reads_the_catalog_under_the_environment(tmp_path: Path) -> None:
    assert _status(tmp_path)["ae_title"] == "PRECEDENT"  # no catalog yet: the default
    conn = connect(tmp_path / "catalog.sqlite")
    aes.set_node_config(conn, ae_title="FROMREST", dimse_port="11113")
    conn.close()
    status = _status(tmp_path)
    assert (status["ae_title"], status["dimse_port"]) == ("FROMREST", 11113)
    status = _status(tmp_path, PRECEDENT_NODE__AE_TITLE="FROMENV")
    assert (status["ae_title"], status["dimse_port"]) == ("FROMENV", 11113)


def test_example_config_documents_every_setting_with_its_default() -> None:
    data = tomllib.loads(EXAMPLE.read_text())
    loaded = load_settings(EXAMPLE)
    assert loaded.model_dump() == Settings().model_dump()  # the file states the defaults
    defaults = Settings().model_dump(mode="json")

    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out

    documented = keys(data)
    # optional settings whose default is "unset" are documented as comments
    text = EXAMPLE.read_text()
    for key in keys(defaults) - documented:
        assert f"# {key.split('.')[-1]} =" in text, f"{key} is not documented in {EXAMPLE.name}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"node": {"ae_title": "A" * 17}}, "setting 'node.ae_title'"),
        ({"node": {"dimse_port": 70000}}, "setting 'node.dimse_port'"),
        ({"node": {"duplicate_policy": "sometimes"}},
         "'keep_first', 'replace' or 'reject'"),
        ({"model": {"device": "tpu"}}, "use auto, cpu, cuda or cuda:N"),
        ({"index": {"dtype": "f64"}}, "use f32, f16, bf16 or i8"),
        ({"nodes": {}}, "setting 'nodes' is not a setting"),
        ({"kos": {"auto_send": True}}, "setting 'kos' destination must name"),
    ],
)
def test_wrong_setting_names_it_and_the_allowed_values(overrides: dict, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, overrides)
    assert message in str(info.value)


def test_wrong_setting_stops_serve_with_the_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[node]\nduplicate_policy = "sometimes"\n')
    result = subprocess.run(
        [sys.executable, "-m", "node", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "node.duplicate_policy" in result.stderr and "keep_first" in result.stderr


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
