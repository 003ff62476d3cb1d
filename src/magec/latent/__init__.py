"""Latent-space models fitted on generated samples: LinkNet and the editors.

One convention for everything fitted here, as in the paper's pipeline: a classmethod ``fit(...)``
returns a new, fitted object (``LinkNet.fit``, ``InterfaceGANEditor.fit``, ``GANSpaceEditor.fit``,
``SeFaEditor.fit``, ``StyleFlowEditor.fit``); ``tensors()`` / ``from_tensors(...)`` store it in a pack and
rebuild it. Every editor follows the ``magec.latent.editors.LatentEditor`` protocol and declares its
``traits`` (``magec.latent.kinds``: family, ranking, MAGEC use, default operations), where the editor lists live.
"""
