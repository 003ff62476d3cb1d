"""magec: editable GAN inversion with the MAGEC image-latent consistency loss.

The library is organised as the method is (see README.md):

- ``magec.generators``  pretrained GANs behind one interface (embedded face DCGAN, StyleGAN2)
- ``magec.describers``  the paper's F: image -> descriptor, with the loss F was trained with
- ``magec.latent``      LinkNet (latent -> descriptor) and latent editors (InterfaceGAN, GANSpace, ...)
- ``magec.losses``      image losses (MSE, perceptual, identity) and the MAGEC loss (Eq. 2)
- ``magec.inversion``   the optimiser and the methods magec / no-magec / im2stylegan++
- ``magec.evaluation``  the paper's metrics (Tables 1-3, ECS)
- ``magec.cli``         the thin ``magec`` command line on top
"""

__version__ = "0.1.0"
