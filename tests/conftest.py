import pytest
import torch

from edtalk.testing import PARITY_ENV, find_parity_dir, skip_unless_required

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def parity_dir():
    """The official-parity reference set; a clear skip where it is absent (CI requires it)."""
    path = find_parity_dir()
    if path is None:
        skip_unless_required(f"official parity set not found (looked at ${PARITY_ENV} and "
                             "../shared/reference/official_parity)")
    return path


@pytest.fixture(scope="session")
def reference(parity_dir):
    return torch.load(parity_dir / "reference.pt", weights_only=True)
