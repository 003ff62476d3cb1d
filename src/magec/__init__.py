"""magec: editable GAN inversion with the MAGEC image-latent consistency loss.

The handful of names a user needs, importable from ``magec`` directly (loaded on first use, so
``import magec`` is instant and never imports torch)::

    import magec

    pipe = magec.load_pipeline()                     # the embedded default (prepared on first use, cached)
    photo = magec.load_face("photo.jpg", pipe)       # the face found and framed for the generator
    result = magec.invert(pipe, photo, "magec", callback=magec.ProgressBar())
    older = magec.edit(pipe, result.latents, "interfacegan", "age", 3.0)
    magec.save_png(pipe.generator.synthesize(older)[0], "older.png")

The library is organised as the method is (see README.md, "Layout"):

- ``magec.generators``  pretrained GANs behind one interface (embedded face DCGAN, StyleGAN2)
- ``magec.describers``  the paper's F: image -> descriptor, with the loss F was trained with
- ``magec.faces``       faces in photos: detection, FFHQ alignment, framing, face chips
- ``magec.latent``      LinkNet (latent -> descriptor) and latent editors (InterfaceGAN, GANSpace, SeFa, StyleFlow)
- ``magec.losses``      image losses (MSE, perceptual, identity) and the MAGEC loss (Eq. 2)
- ``magec.inversion``   the optimiser, the methods magec / no-magec / im2stylegan++, whole folders (``invert_folder``)
- ``magec.editing``     a latent file's edits written to a folder (``edit_latent_file``, what ``magec edit`` runs)
- ``magec.evaluation``  the paper's metrics (Tables 1-3, ECS)
- ``magec.cli``         the thin ``magec`` command line on top
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from magec._version import __version__

#: Public name -> "module:attribute" it is loaded from on first use.
_EXPORTS: dict[str, str] = {
    "MagecError": "magec.errors:MagecError",
    "Pipeline": "magec.pipeline:Pipeline",
    "load_pipeline": "magec.pipeline:load_pipeline",
    "assemble_pipeline": "magec.pipeline:assemble_pipeline",
    "Pack": "magec.pack:Pack",
    "PrepareConfig": "magec.prepare:PrepareConfig",
    "prepare_pack": "magec.prepare:prepare_pack",
    "load_generator": "magec.generators:load_generator",
    "load_describer": "magec.describers:load_describer",
    "invert": "magec.inversion.optimizer:invert",
    "InversionResult": "magec.inversion.optimizer:InversionResult",
    "InversionConfig": "magec.inversion.config:InversionConfig",
    "Projection": "magec.inversion.projection:Projection",
    "load_latent": "magec.inversion.outputs:load_latent",
    "invert_folder": "magec.inversion.folder_run:invert_folder",
    "FolderSettings": "magec.inversion.folder_run:FolderSettings",
    "edit_latent_file": "magec.editing:edit_latent_file",
    "EditSettings": "magec.editing:EditSettings",
    "StepInfo": "magec.inversion.optimizer:StepInfo",
    "ProgressBar": "magec.inversion.progress:ProgressBar",
    "method_config": "magec.inversion.config:method_config",
    "METHODS": "magec.inversion.config:METHODS",
    "ENCODER_METHODS": "magec.inversion.config:ENCODER_METHODS",
    "Encoder": "magec.encoders.base:Encoder",
    "edit": "magec.render:edit",
    "apply_edits": "magec.render:apply_edits",
    "evaluate": "magec.evaluation.runner:run_evaluation",
    "EvaluationConfig": "magec.evaluation.config:EvaluationConfig",
    "align_photo": "magec.faces.alignment:align_photo",
    "load_image": "magec.io.images:load_image",
    "load_face": "magec.pipeline:load_face",
    "save_png": "magec.io.images:save_png",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from magec.describers import load_describer
    from magec.editing import EditSettings, edit_latent_file
    from magec.encoders.base import Encoder
    from magec.errors import MagecError
    from magec.evaluation.config import EvaluationConfig
    from magec.evaluation.runner import run_evaluation as evaluate
    from magec.faces.alignment import align_photo
    from magec.generators import load_generator
    from magec.inversion.config import ENCODER_METHODS, METHODS, InversionConfig, method_config
    from magec.inversion.folder_run import FolderSettings, invert_folder
    from magec.inversion.optimizer import InversionResult, StepInfo, invert
    from magec.inversion.outputs import load_latent
    from magec.inversion.progress import ProgressBar
    from magec.inversion.projection import Projection
    from magec.io.images import load_image, save_png
    from magec.pack import Pack
    from magec.pipeline import Pipeline, assemble_pipeline, load_face, load_pipeline
    from magec.prepare import PrepareConfig, prepare_pack
    from magec.render import apply_edits, edit


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'magec' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
