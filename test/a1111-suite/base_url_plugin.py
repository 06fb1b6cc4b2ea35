"""pytest plugin for running AUTOMATIC1111's API tests against `sdstudio serve`.

A1111's tests take the server's address from the `base_url` fixture of the pytest-base-url plugin
(A1111's pyproject sets it to http://127.0.0.1:7860). When that plugin is not installed, this one
gives the same fixture, read from SDSTUDIO_BASE_URL (default http://127.0.0.1:7860).
"""
import os

import pytest

try:
    import pytest_base_url  # noqa: F401

    HAVE_PLUGIN = True
except ImportError:
    HAVE_PLUGIN = False

if not HAVE_PLUGIN:

    @pytest.fixture(scope="session")
    def base_url() -> str:
        return os.environ.get("SDSTUDIO_BASE_URL", "http://127.0.0.1:7860").rstrip("/")
