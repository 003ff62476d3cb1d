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
