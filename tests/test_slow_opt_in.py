"""conftest.py's ``opt_in_to_slow``: slow tests run whenever a ``-m`` expression selects them and
are skipped when no ``-m`` is given; ``-m "not slow"`` deselects them. Its ``opt_in_to_ray``: Ray
tests run only when the expression names ray.

Each case runs pytest in a fresh process on a throwaway project whose conftest takes the fixtures
from tests/conftest.py, with one slow, one Ray and one ordinary test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("rlexp_tests_conftest", {str(TESTS / "conftest.py")!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
opt_in_to_slow = _module.opt_in_to_slow
opt_in_to_ray = _module.opt_in_to_ray
"""

PROBES = """
import pytest


@pytest.mark.slow
def test_slow_probe():
    pass


@pytest.mark.ray
def test_ray_probe():
    pass


def test_quick_probe():
    pass
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slow_opt_in")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_probes.py").write_text(PROBES)
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    slow: long test\n    ray: starts Ray\n")
    return root


def outcomes(project: Path, *args: str) -> dict[str, str]:
    """{test name: PASSED | SKIPPED | ...} of the tests that ran; deselected tests are absent."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args],
                         cwd=project, capture_output=True, text=True, timeout=300)
    assert out.returncode in (0, 5), out.stdout[-3000:] + out.stderr[-3000:]  # 5: every test deselected
    found = {}
    for line in out.stdout.splitlines():
        if line.startswith("test_probes.py::"):
            name, outcome = line.split("::", 1)[1].split()[:2]
            found[name] = outcome
    return found


@pytest.mark.parametrize("args, expected", [
    ((), {"test_slow_probe": "SKIPPED", "test_ray_probe": "SKIPPED", "test_quick_probe": "PASSED"}),
    (("-m", "slow"), {"test_slow_probe": "PASSED"}),
    (("-m", "slow or not slow"), {"test_slow_probe": "PASSED", "test_ray_probe": "SKIPPED", "test_quick_probe": "PASSED"}),
    (("-m", "not slow"), {"test_ray_probe": "SKIPPED", "test_quick_probe": "PASSED"}),
    (("-m", "not (not slow)"), {"test_slow_probe": "PASSED"}),
    (("-m", "ray"), {"test_ray_probe": "PASSED"}),
])
def test_slow_tests_run_when_the_marker_expression_selects_them(project, args, expected):
    assert outcomes(project, *args) == expected
