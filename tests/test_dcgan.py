import pytest
import torch

from magec.generators.dcgan import DCGANFace


def test_dcgan_outputs_images_in_range(dcgan):
    z = dcgan.sample_latents(4, seed=3)
    x = dcgan.synthesize(z)
    assert x.shape == (4, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    assert x.std() > 0.1  # real weights give real, varied faces, not a constant


def test_sampling_is_seeded(dcgan):
    assert torch.equal(dcgan.sample_latents(3, seed=7), dcgan.sample_latents(3, seed=7))
    assert not torch.equal(dcgan.sample_latents(3, seed=7), dcgan.sample_latents(3, seed=8))


@pytest.mark.slow
def test_gradient_dead_at_zero_but_alive_at_initial_latent(dcgan):
    zero = torch.zeros(1, 100, requires_grad=True)
    dcgan.synthesize(zero).sum().backward()
    assert zero.grad.abs().max() == 0  # the measured fact that rules out z_avg = 0

    z0 = dcgan.initial_latent().clone()[None].requires_grad_(True)
    dcgan.synthesize(z0).square().mean().backward()
    assert z0.grad.norm() > 1e-3
    assert 5 < float(z0.norm()) < 15  # on the typical shell |z| ~ sqrt(100)


def test_bad_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "weights.tar"
    bad.write_bytes(b"not a checkpoint")
    import pytest

    from magec.errors import MagecError

    with pytest.raises(MagecError, match="weights.tar"):
        DCGANFace.from_checkpoint(bad)
