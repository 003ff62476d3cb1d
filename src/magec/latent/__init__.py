"""Latent-space models fitted on generated samples: LinkNet, editors, latent statistics."""
