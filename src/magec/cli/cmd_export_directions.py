"""``magec export-directions --pack PACK --out DIR``: the pack's edit directions as ``.npy`` files.

InterfaceGAN normals, GANSpace and SeFa components, one (1, L) float32 file each (InterfaceGAN's boundary
format; what e4e/PTI users load), with ``directions.json`` listing name, editor, operation, shape,
default step and SHA-256. ``magec edit --editor boundary:FILE.npy`` reads any such file back.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-directions", help="write the pack's linear edit directions as .npy files", description=__doc__
    )
    p.add_argument("--pack", required=True, help="pack folder (from `magec prepare`)")
    p.add_argument("--out", required=True, help="folder for <editor>_<operation>.npy and directions.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.pack import Pack

    pack = Pack.load(args.pack)
    folder = pack.export_directions(args.out)
    print(f"wrote {sum(len(e.operations()) for e in pack.editors.values() if e.traits.linear)} directions to {folder}")
    return 0
