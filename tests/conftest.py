"""Fixtures shared by the whole suite."""

from __future__ import annotations

from typing import Any

import pytest

from support import ROO, captured_bodies


@pytest.fixture
def roo_body() -> dict[str, Any]:
    """Roo Code v3.52.1's first streaming request."""
    return captured_bodies(ROO)[0]
