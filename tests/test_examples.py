"""Run every script in ``examples/`` briefly and check the figures it writes.

Each script runs in its own Python process with ``--quick --output <tmp>``
and inherits the test settings of ``conftest.py`` (``PYTENSOR_FLAGS`` with
``mode=FAST_COMPILE``) through the environment. A script passes when it
exits with status 0 and every file it reports (``wrote <path>``) is a PNG
named after the script (``<script name>*.png``, the pattern the documentation
uses to find example figures) in the output folder.

The examples need scikit-learn and matplotlib (the ``test`` and ``examples``
extras); without them these tests are skipped with a message that says so.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_examples_found():
    """The examples folder holds the scripts the documentation promises."""
    names = {p.stem for p in SCRIPTS}
    assert {"digits_classifier", "xor_classifier", "digits_autoencoder"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_example_writes_figures(script, tmp_path):
    for module in ("matplotlib", "sklearn"):
        pytest.importorskip(module, reason=f"the examples need {module}: pip install -e '.[test]'")
    output = tmp_path / "figures"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--output", str(output)],
        cwd=tmp_path,
        env=dict(os.environ, MPLBACKEND="Agg"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, f"{script.name} failed\n{report}"
    written = [
        Path(line.split("wrote ", 1)[1].strip())
        for line in result.stdout.splitlines()
        if line.startswith("wrote ")
    ]
    assert written, f"{script.name} reported no figures\n{report}"
    for path in written:
        assert path.parent == output, f"{script.name} wrote {path} outside --output"
        assert path.name.startswith(script.stem) and path.suffix == ".png", path.name
        assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert sorted(output.glob("*.png")) == sorted(written)
