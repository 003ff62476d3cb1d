"""Shared fixtures. Tests run on CPU with few threads so the suite is stable on 2-core machines."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _torch_settings():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def dcgan():
    from magec.generators.dcgan import DCGANFace

    return DCGANFace.from_checkpoint()


@pytest.fixture(scope="module")
def one_thread():
    """Small convolutions run several times faster on one thread when the machine's cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
