"""The latent *pack*: everything ``prepare`` learns about one generator + describer pair.

A pack is a folder::

    PACK/manifest.json          format, version, provenance, fit quality, tensor hashes and shapes
    PACK/tensors.safetensors    LinkNet, InterfaceGAN, GANSpace, SeFa and StyleFlow tensors

Loading verifies the format version, the SHA-256 of the tensor file and every tensor's shape, so a
corrupted or mismatched pack is refused with one line naming the problem instead of failing later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from magec.describers.base import DescriptorLayout
from magec.errors import file_error
from magec.io.atomic import atomic_dir, atomic_path, write_text
from magec.io.hashing import sha256_file
from magec.io.json_files import read_json_file
from magec.io.output_folder import OutputFolder
from magec.latent.boundaries import export_directions, linear_editors
from magec.latent.editors import LatentEditor
from magec.latent.ganspace import GANSpaceEditor
from magec.latent.interfacegan import InterfaceGANEditor
from magec.latent.linknet import LinkNet
from magec.latent.sefa import SeFaEditor
from magec.latent.styleflow import ConditionalFlow, StyleFlowEditor, linknet_attributes

PACK_FORMAT = "magec-pack"
#: 2: latent statistics (never read) left the pack; SeFa directions and the StyleFlow flow joined it.
#: Older packs are refused with "re-run magec prepare".
PACK_VERSION = 2
MANIFEST = "manifest.json"
TENSORS = "tensors.safetensors"


def _pack_files(folder: Path) -> list[str]:
    """The files of a pack written before output indexes existed: its manifest vouches for them."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    return [MANIFEST, TENSORS] if isinstance(manifest, dict) and manifest.get("format") == PACK_FORMAT else []


def check_pack_folder(folder: str | Path, force: bool = False, extra: tuple[str, ...] = ()) -> Path:
    """Check, before any heavy work, that a pack may be written to ``folder`` (one-line error otherwise);
    ``extra``: more file names the pack will hold (``prepare``'s encoder)."""
    folder = Path(folder)
    out = OutputFolder.open(folder, "pack", force, own=_pack_files)
    out.check_claims({TENSORS: "", MANIFEST: "", **{name: "" for name in extra}})
    return folder


def index_pack_files(folder: str | Path, names: tuple[str, ...], force: bool = False) -> None:
    """Record files magec just wrote into a pack folder (``train-encoder``'s ``PACK/encoder.safetensors``) in its
    index, so that later runs see them as the pack's own."""
    out = OutputFolder.open(Path(folder), "pack", force, own=_pack_files)
    out.files.update({name: "" for name in names})
    out.claimed.update(names)
    out.save_index()


@dataclass
class Pack:
    """LinkNet and the editors of one generator/describer pair, plus its manifest."""

    generator_spec: str
    describer_spec: str
    layout: DescriptorLayout
    linknet: LinkNet
    interfacegan: InterfaceGANEditor
    ganspace: GANSpaceEditor
    #: Provenance and fit quality (free-form JSON; ``linknet.heldout_agreement.<attribute>`` among others).
    info: dict[str, Any] = field(default_factory=dict)
    #: Editors by kind; a ``magec.pipeline.Pipeline`` copies them and adds "interpolate", which needs the generator.
    editors: dict[str, LatentEditor] = field(default_factory=dict)
    #: SeFa's closed-form directions (None for a generator without a first linear map to factorise).
    sefa: SeFaEditor | None = None
    #: StyleFlow's conditional flow (None when ``prepare`` skipped it).
    styleflow: ConditionalFlow | None = None
    #: SHA-256 of the files the describer was read from (e.g. ``onnx:`` model and layout), so a pack is never
    #: reused with a different F under the same spec.
    describer_files: dict[str, str] = field(default_factory=dict)
    #: More files ``save`` writes into the pack folder, name -> writer(path) (``prepare``'s trained encoder and its
    #: report); each writer writes atomically. Not read back by ``load`` (``magec.pipeline`` reads the encoder).
    extra_files: dict[str, Callable[[Path], object]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.editors.setdefault("interfacegan", self.interfacegan)
        self.editors.setdefault("ganspace", self.ganspace)
        if self.sefa is not None:
            self.editors.setdefault("sefa", self.sefa)
        if self.styleflow is not None:
            self.editors.setdefault("styleflow", StyleFlowEditor(self.styleflow, linknet_attributes(self.linknet)))

    @property
    def latent_dim(self) -> int:
        return self.linknet.latent_dim

    def export_directions(self, folder: str | Path) -> Path:
        """Write every fixed direction of the pack (its ``editors``: InterfaceGAN, GANSpace, SeFa) as ``.npy``
        files with an index naming the pack's generator and latent size (``magec export-directions``)."""
        return export_directions(
            linear_editors(self.editors), folder, generator=self.generator_spec, latent_dim=self.latent_dim
        )

    def to(self, device: torch.device | str) -> Pack:
        self.linknet.to(device)
        self.interfacegan.to(device)
        self.ganspace.to(device)
        if self.sefa is not None:
            self.sefa.to(device)
        if self.styleflow is not None:
            self.styleflow.to(device)
        return self

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"linknet.{k}": v for k, v in self.linknet.state_dict().items()}
        out |= {f"interfacegan.{k}": v for k, v in self.interfacegan.tensors().items()}
        out |= {f"ganspace.{k}": v for k, v in self.ganspace.tensors().items()}
        if self.sefa is not None:
            out |= {f"sefa.{k}": v for k, v in self.sefa.tensors().items()}
        if self.styleflow is not None:
            out |= {f"styleflow.{k}": v for k, v in self.styleflow.tensors().items()}
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    def manifest(self, tensors: dict[str, torch.Tensor], tensor_sha256: str) -> dict[str, Any]:
        return {
            "format": PACK_FORMAT,
            "version": PACK_VERSION,
            "generator": self.generator_spec,
            "describer": {
                "spec": self.describer_spec,
                "layout": self.layout.to_dict(),
                **({"files": dict(sorted(self.describer_files.items()))} if self.describer_files else {}),
            },
            "latent_dim": self.latent_dim,
            **({"styleflow_config": self.styleflow.config_dict()} if self.styleflow is not None else {}),
            "tensors": {
                "file": TENSORS,
                "sha256": tensor_sha256,
                "shapes": {k: list(v.shape) for k, v in sorted(tensors.items())},
            },
            **self.info,
        }

    def save(self, folder: str | Path, force: bool = False) -> Path:
        """Write the pack; nothing is ever half-written and no file magec did not write is replaced.

        A new (or empty) folder is built under a temporary name and renamed. An existing pack is
        updated file by file (tensors, then the manifest that vouches for them by SHA-256), so an
        interruption leaves either the old pack or one that ``load`` refuses, never a wrong one.
        A folder holding anything else is refused (``force`` allows adding the pack beside its files).
        """
        folder = check_pack_folder(folder, force)
        tensors = self.tensors()
        if not folder.exists() or not any(folder.iterdir()):
            with atomic_dir(folder) as tmp:
                self._write_files(tmp, tensors)
            return folder
        out = OutputFolder.open(folder, "pack", force, own=_pack_files)
        out.claim({TENSORS: "", MANIFEST: "", **{name: "" for name in self.extra_files}})
        for name, write in self.extra_files.items():
            write(folder / name)
        with atomic_path(folder / TENSORS) as tmp_tensors:
            save_file(tensors, str(tmp_tensors))
            digest = sha256_file(tmp_tensors)
        write_text(folder / MANIFEST, json.dumps(self.manifest(tensors, digest), indent=2, sort_keys=True) + "\n")
        return folder

    def _write_files(self, folder: Path, tensors: dict[str, torch.Tensor]) -> None:
        save_file(tensors, str(folder / TENSORS))
        manifest = self.manifest(tensors, sha256_file(folder / TENSORS))
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for name, write in self.extra_files.items():
            write(folder / name)
        files = {TENSORS: "", MANIFEST: "", **{name: "" for name in self.extra_files}}
        OutputFolder(folder, "pack", files=files).save_index()

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> Pack:
        """Read and verify a pack; any inconsistency raises a one-line MagecError naming the file."""
        folder = Path(folder)
        manifest_path, tensors_path = folder / MANIFEST, folder / TENSORS
        if not folder.is_dir():
            raise file_error(folder, "no such pack folder (create one with `magec prepare --out PACK`)")
        manifest = read_json_file(manifest_path, "missing: not a magec pack", "manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
            raise file_error(manifest_path, f"not a magec pack manifest (format is not {PACK_FORMAT!r})")
        if manifest.get("version") != PACK_VERSION:
            raise file_error(
                manifest_path,
                f"pack version {manifest.get('version')!r} is not supported (this magec reads version "
                f"{PACK_VERSION}); re-run `magec prepare`",
            )
        if not tensors_path.is_file():
            raise file_error(tensors_path, "missing: the pack is incomplete")
        expected = manifest.get("tensors", {})
        if sha256_file(tensors_path) != expected.get("sha256"):
            raise file_error(tensors_path, "corrupted: SHA-256 does not match the manifest")
        try:
            tensors = load_file(str(tensors_path))
        except (SafetensorError, OSError) as exc:
            raise file_error(tensors_path, f"corrupted tensor file ({exc})") from None
        shapes = expected.get("shapes", {})
        if set(shapes) != set(tensors):
            missing = sorted(set(shapes) ^ set(tensors))
            raise file_error(tensors_path, f"tensor names do not match the manifest: {', '.join(missing[:5])}")
        for name, shape in shapes.items():
            if list(tensors[name].shape) != list(shape):
                raise file_error(
                    tensors_path, f"tensor {name} has shape {list(tensors[name].shape)}, manifest says {shape}"
                )
            if tensors[name].is_floating_point() and not bool(torch.isfinite(tensors[name]).all()):
                raise file_error(tensors_path, f"tensor {name} holds NaN or infinite values; re-run `magec prepare`")
        try:
            layout = DescriptorLayout.from_dict(manifest["describer"]["layout"])
            latent_dim = int(manifest["latent_dim"])
            group = lambda prefix: {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            linknet = LinkNet(latent_dim, layout)
            linknet.load_state_dict(group("linknet"), strict=True)
            linknet.requires_grad_(False)
            interfacegan = InterfaceGANEditor.from_tensors(layout.attribute_names, group("interfacegan"))
            ganspace = GANSpaceEditor.from_tensors(group("ganspace"))
            sefa = SeFaEditor.from_tensors(group("sefa")) if group("sefa") else None
            flow = group("styleflow")
            styleflow = ConditionalFlow.from_tensors(manifest["styleflow_config"], flow) if flow else None
            describer_files = manifest["describer"].get("files", {})
            if not isinstance(describer_files, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in describer_files.items()
            ):
                raise ValueError("describer.files must map names to SHA-256 strings")
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise file_error(
                folder, f"inconsistent pack ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
        reserved = {"format", "version", "generator", "describer", "latent_dim", "tensors", "styleflow_config"}
        info = {k: v for k, v in manifest.items() if k not in reserved}
        pack = cls(
            manifest["generator"],
            manifest["describer"]["spec"],
            layout,
            linknet,
            interfacegan,
            ganspace,
            info,
            sefa=sefa,
            styleflow=styleflow,
            describer_files=describer_files,
        )
        return pack.to(device)
