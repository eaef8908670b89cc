import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUAA = Path(os.environ.get("IRSTD_NUAA", REPO.parent / "shared" / "datasets" / "NUAA-SIRST"))


@pytest.fixture(scope="session")
def nuaa_root() -> Path:
    """The real NUAA-SIRST dataset beside the repository; tests using it skip when it is absent."""
    if not (NUAA / "images").is_dir():
        pytest.skip(f"NUAA-SIRST not found at {NUAA}")
    return NUAA
