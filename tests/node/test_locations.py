"""Every command finds the settings file and data folder the way `precedent serve` does,
in the documented order, says which it uses, and never makes a catalog by reading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.locations import CONFIG_ENV, default_data_dir, find_config_file
from node.settings import load_settings, location_notes
from tests.node._cli import cli, one_line_error, start_serve


def test_the_settings_file_is_found_in_the_documented_order(tmp_path: Path) -> None:
    local, system, named = tmp_path / "precedent.toml", tmp_path / "node.toml", tmp_path / "x.toml"
    for f in (local, system, named):
        f.write_text("")
    order = (local, system)
    assert find_config_file(named, environ={CONFIG_ENV: str(system)}, locations=order).path \
        == named
    found = find_config_file(None, environ={CONFIG_ENV: str(named)}, locations=order)
    assert (found.path, found.source) == (named, CONFIG_ENV)
    found = find_config_file(None, environ={}, locations=order)
    assert found.path == local and found.source.startswith("found at")
    local.unlink()
    assert find_config_file(None, environ={}, locations=order).path == system
    system.unlink()
    found = find_config_file(None, environ={}, locations=order)
    assert found.path is None and "none found" in found.source


def test_the_default_data_folder_is_per_user_not_per_working_folder(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "precedent"
    assert default_data_dir({}) == Path.home() / ".local" / "share" / "precedent"


def test_relative_paths_in_the_settings_file_count_from_its_folder(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    config = site / "node.toml"
    config.write_text('[node]\ndata_dir = "data"\n[model]\npath = "models/biomedclip"\n')
    settings = load_settings(config, config_source="--config")
    assert settings.node.data_dir == site / "data"
    assert settings.model.path == site / "models" / "biomedclip"
    assert location_notes(settings) == (
        f"data folder {site / 'data'} (from the settings file); settings file: {config} "
        "(--config)")


def test_reads_from_another_folder_make_nothing_and_say_where_they_looked(
        tmp_path: Path) -> None:
    """The issue: `precedent reports import reports.csv` from another folder reported
    "0 matched" after silently making ./precedent-data there."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    default = home / ".local" / "share" / "precedent"
    reports = elsewhere / "reports.csv"
    reports.write_text("AccessionNumber,text\nACC1,report\n")
    where = (f"precedent: data folder {default} (from the default); settings file: none "
             "found at precedent.toml or /etc/precedent/node.toml")

    result = cli("reports", "import", str(reports), home=home, cwd=elsewhere)
    assert result.stderr.splitlines()[0] == where
    assert f"no catalog in {default}" in one_line_error(result)
    for args in (["index", "status"], ["eval", "--labels", str(reports)]):
        result = cli(*args, home=home, cwd=elsewhere)
        assert f"no catalog in {default}" in one_line_error(result)
    status = cli("status", home=home, cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert "no catalog here yet" in status.stdout and "not running" in status.stdout
    listed = cli("ae", "source", "list", home=home, cwd=elsewhere)
    assert listed.returncode == 0 and "no sources configured" in listed.stdout
    assert not default.exists() and not (elsewhere / "precedent-data").exists()
    assert sorted(p.name for p in elsewhere.iterdir()) == ["reports.csv"]


@pytest.mark.slow
def test_every_command_finds_the_folder_the_running_node_uses(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """serve finds ./precedent.toml in its folder; a command run elsewhere with the same
    file (PRECEDENT_CONFIG) finds the same data folder, and the node running in it."""
    home, site, elsewhere = tmp_path / "home", tmp_path / "site", tmp_path / "elsewhere"
    for folder in (home, site, elsewhere):
        folder.mkdir()
    config = site / "precedent.toml"
    config.write_text(f'[node]\ndata_dir = "data"\nallow_any_source = true\n'
                      f'[model]\npath = "{tiny_model_dir}"\n')
    serve = start_serve(home=home, cwd=site)
    try:
        serve.wait()
        assert (f"data folder {site / 'data'} (from the settings file); settings file: "
                f"{config} (found at precedent.toml)") in serve.log()
        result = cli("status", "--json", home=home, cwd=elsewhere,
                     PRECEDENT_CONFIG=str(config))
        assert result.returncode == 0, result.stderr
        assert result.stderr.splitlines()[0] == (
            f"precedent: data folder {site / 'data'} (from the settings file); settings "
            f"file: {config} ({CONFIG_ENV})")
        status = json.loads(result.stdout)
        assert status["running"] is True and status["pid"] == serve.process.pid
        assert status["data_dir"] == str(site / "data")
        assert status["http_url"] == serve.url
    finally:
        assert serve.stop() == 0, serve.log()
    assert not (elsewhere / "data").exists() and not (home / ".local").exists()
