"""One definition of a folder's image files (``magec.io.image_files``), shared by ``invert DIR`` and
``evaluate --images DIR``."""

from __future__ import annotations

import os

import pytest

from magec.errors import MagecError
from magec.evaluation import sources
from magec.inversion import folder
from magec.io import image_files as listing

TREE = (
    "b/2.png",
    "b/1.JPG",
    "a.png",
    "c/deep/x.webp",
    "c/readme.md",
    ".hidden/h.png",
    "c/.secret.png",
    ".a.png.magec-123-abcdefgh.tmp",
    "c/.x.png.magec-4-abcdefgh.tmp",
    "run/edited.png",
)


def _tree(root):
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    os.symlink(root / "missing.png", root / "broken.png")
    return root


def _rel(root, paths):
    return [p.relative_to(root).as_posix() for p in paths]


def test_a_folder_s_images_are_recursive_sorted_and_skip_hidden_and_temporary_files(tmp_path):
    root = _tree(tmp_path)
    found = listing.folder_files(root, exclude=[root / "run"])
    assert _rel(root, found.images) == ["a.png", "b/1.JPG", "b/2.png", "c/deep/x.webp"]
    assert _rel(root, found.others) == ["c/readme.md"]
    assert _rel(root, listing.image_files(root))[-1] == "run/edited.png"  # only what is excluded is left out
    # A folder named explicitly is listed even inside a hidden one; hidden names below it are not.
    (root / ".hidden" / ".h2.png").write_bytes(b"x")
    assert _rel(root, listing.image_files(root / ".hidden")) == [".hidden/h.png"]
    assert listing.image_files(root / "run", exclude=[root / "run"]) == []


def test_invert_and_evaluate_list_the_same_images(tmp_path):
    root = _tree(tmp_path)
    out = root / "run"
    inverted = folder.collect_inputs([str(root)], exclude=out).files
    evaluated = sources.image_files(root, exclude=[out])
    assert evaluated == inverted == listing.image_files(root, [out])
    assert "c/deep/x.webp" in _rel(root, evaluated)  # evaluate now finds the images of sub-folders
    assert _rel(root, sources.image_files(root, limit=2, exclude=[out])) == ["a.png", "b/1.JPG"]
    # One function and one list of suffixes behind both commands.
    assert folder.folder_files is sources.folder_files is listing.folder_files
    assert folder.IMAGE_SUFFIXES is sources.IMAGE_SUFFIXES is listing.IMAGE_SUFFIXES
    with pytest.raises(MagecError, match="contains no images"):
        sources.image_files(root / "c" / "deep" / "..", exclude=[root / "c"])


def test_evaluate_s_folder_source_reads_sub_folders_and_leaves_its_run_folder_out(tmp_path):
    from PIL import Image

    for name in ("a.png", "sub/b.png", "run/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (12, 12), (200, 10, 10)).save(tmp_path / name)
    source = sources.folder_source(tmp_path, 8, exclude=[tmp_path / "run"])
    assert source.ids == ["00000-a", "00001-b"]
    assert tuple(source.load([1]).shape) == (1, 3, 8, 8)
