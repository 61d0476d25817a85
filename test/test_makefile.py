"""The Makefile's set-up stops early, naming what is missing."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from support.processes import REPO


@pytest.mark.parametrize("missing", ["cmake", "c++"])
def test_a_missing_system_tool_is_named(tmp_path, missing):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("cmake", "cc", "c++", "make", "python3"):
        if tool != missing:
            (bindir / tool).symlink_to(shutil.which(tool))
    env = dict(os.environ, PATH=str(bindir))
    result = subprocess.run([shutil.which("make"), "-s", "check-tools"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0
    assert f"'{missing}' is not installed" in result.stderr


def test_all_tools_present_passes_the_check():
    result = subprocess.run(["make", "-s", "check-tools"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_names_every_benchmark_target():
    result = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    for target in ("make bench ", "make bench-gpu", "make soak", "make demo"):
        assert target in result.stdout, target
