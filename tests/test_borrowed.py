"""What borrowed/ takes from inside libraries was written for exact versions: an
upgrade must re-read borrowed/ (and pass the tests that prove each override) first."""
from __future__ import annotations

from importlib.metadata import version

import pytest

from borrowed import WRITTEN_FOR


@pytest.mark.parametrize("distribution", sorted(WRITTEN_FOR))
def test_installed_version_is_the_one_borrowed_was_written_for(distribution):
    assert version(distribution) == WRITTEN_FOR[distribution], (
        f"{distribution} {version(distribution)} is installed; borrowed/ was written for "
        f"{WRITTEN_FOR[distribution]}: re-read its overrides, then update WRITTEN_FOR")
