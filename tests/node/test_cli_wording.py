"""The words an admin reads: `precedent --help` describes the command groups, the
eval labels CSV and the reports CSV are documented with their flags, and nothing is
printed into the middle of a progress bar (warnings of the decoding processes included)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests._synthetic import make_studies, write_files
from tests.node._cli import clean_env, cli

GROUPS = ("serve", "worker", "status", "ae", "index", "import", "backfill", "reports", "eval",
          "model", "viewer")


def test_help_describes_the_node_and_its_command_groups(tmp_path: Path) -> None:
    result = cli("--help", home=tmp_path)
    assert result.returncode == 0
    assert "The ``precedent`` command" not in result.stdout
    assert "a DICOM node beside the PACS that finds similar past cases" in result.stdout
    listed = re.findall(r"^    (\w+)\s{2,}\S", result.stdout, flags=re.M)
    assert listed == list(GROUPS)
    assert "PRECEDENT_NODE__DATA_DIR" in result.stdout  # where commands look


def test_eval_and_reports_import_document_their_csv_files(tmp_path: Path) -> None:
    ev = cli("eval", "--help", home=tmp_path).stdout
    assert "StudyInstanceUID,labels" in ev and "separated by |" in ev
    assert re.search(r"--labels LABELS\s+CSV file", ev)
    assert re.search(r"--k K\s+how many similar studies each query looks at", ev)
    reports = cli("reports", "import", "--help", home=tmp_path).stdout
    assert "StudyInstanceUID or an" in reports and "AccessionNumber" in reports
    assert "labels column" in reports


def _run_in_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run with stdout and stderr on a pseudo-terminal (so progress bars are live) and
    return what the terminal received."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(args, stdin=secondary, stdout=secondary, stderr=secondary,
                               env={**env, "COLUMNS": "100", "TERM": "xterm"}, cwd=cwd)
    os.close(secondary)
    received = b""
    while True:
        ready, _, _ = select.select([main], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            received += chunk
        elif process.poll() is not None:
            break
    os.close(main)
    assert process.wait(timeout=60) == 0, received.decode(errors="replace")[-3000:]
    return received.decode("utf-8", errors="replace")


@pytest.mark.slow
def test_warnings_of_the_decoding_processes_are_printed_above_the_bar(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    """Before: a decoding process's UserWarning (pydicom's, about pixel data longer than
    the image needs) landed in the middle of the live `indexing` bar."""
    archive = tmp_path / "archive"
    for study in make_studies(3, instances_per_study=2):
        write_files(study.datasets, archive / study.patient_id)
    # the ingest keeps pixel data longer than the header says (it is readable); pydicom
    # warns about it when the decoding process reads the pixels
    (padded,) = next(iter(make_studies(1, instances_per_study=1, seed=9))).datasets
    padded.PixelData = padded.PixelData + bytes(len(padded.PixelData) + 2)
    write_files([padded], archive / "padded")
    env = clean_env(tmp_path, PRECEDENT_WORKER__DECODE_PROCESSES="1")
    screen = _run_in_a_terminal(
        [sys.executable, "-m", "node", "index", "import", str(archive), "--data-dir",
         str(tmp_path / "data"), "--model", f"local-dir:{tiny_model_dir}"], env, tmp_path)
    lines = [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line)
             for line in re.split(r"\r\n|\r|\n", screen)]
    warned = [line for line in lines if "bytes of pixel data" in line]
    assert warned, "the decoding process's warning was not shown"
    assert all("━" not in line for line in warned), warned
    assert any(re.search(r"indexing\s+━+\s+7/7", line) for line in lines)
