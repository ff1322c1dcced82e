"""Every module imports on its own (no import cycles), and the inner parts stay off aiohttp."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import memshift

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(memshift.__path__, "memshift.")
    if m.name != "memshift.__main__"
)
NO_AIOHTTP = ("memshift.config", "memshift.compare", "memshift.control", "memshift.errors")


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    """Importing the module in a fresh interpreter works; inner parts never pull in aiohttp."""
    code = f"import sys, {module}; print('aiohttp' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert 0 == done.returncode, done.stderr
    if module.startswith(NO_AIOHTTP):
        assert "False" == done.stdout.strip()
