"""The layer rules of DESIGN.md are enforced by import-linter."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env={"PYTHONPATH": str(project / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(
        ROOT / "src",
        project / "src",
        ignore=shutil.ignore_patterns("__pycache__", "vendor", "data"),
    )
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_tree_keeps_its_layers(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_importing_an_app_breaks_the_build(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    (project / "src/citybrain/apps/intruder.py").write_text('"""An app."""\n')
    (project / "src/citybrain/core/geo/shortcut.py").write_text(
        '"""Breaks the rule on purpose."""\n\nimport citybrain.apps.intruder  # noqa: F401\n'
    )
    result = _lint(project)
    assert result.returncode != 0
    assert "citybrain.core.geo.shortcut -> citybrain.apps.intruder" in result.stdout


def test_the_simulator_may_not_reach_into_the_platform(tmp_path: Path) -> None:
    project = _copy(tmp_path)
    (project / "src/citybrain/simulate/cheat.py").write_text(
        '"""Reads the platform directly."""\n\nimport citybrain.core.people.models  # noqa: F401\n'
    )
    result = _lint(project)
    assert result.returncode != 0
    assert "citybrain.simulate.cheat -> citybrain.core.people.models" in result.stdout
