"""Names the encoders go by, torch-free: read by ``--init`` checks before any model loads."""

from __future__ import annotations

#: The pack's own encoder, beside its manifest (``magec prepare`` / ``magec train-encoder``).
PACK_ENCODER = "encoder.safetensors"
#: Spec prefixes of e4e's and pSp's training checkpoints (``e4e:PATH``, ``psp:PATH``; ``magec.encoders.e4e``).
CHECKPOINT_KINDS = ("e4e", "psp")
