"""The installed package (a wheel, as the Dockerfile installs it) carries every data file the code reads:
catalog, parameters, source rules, samples, matching data, migrations, templates. An editable install reads
them from the tree, so a file missing from ``package-data`` only shows up in production."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("profiles", "policies", "matching", "service")


@pytest.mark.slow
def test_the_wheel_carries_every_tracked_data_file(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", *PACKAGES], capture_output=True, text=True, check=True,
                             cwd=ROOT).stdout.split()
    missing = [t for t in tracked if not t.endswith(".py") and "/tests/" not in t and t not in names]
    assert not missing, f"not in the wheel (add them to [tool.setuptools.package-data]): {missing}"
