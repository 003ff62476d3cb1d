"""Any common image format, size and mode is read; bad files are refused with a one-line error."""

import numpy as np
import pytest
import torch
from PIL import Image

from magec.errors import MagecError
from magec.io.images import load_image, read_image, save_png, tensor_to_pil


def test_modes_and_formats(tmp_path):
    rgba = Image.new("RGBA", (40, 30), (255, 0, 0, 0))  # fully transparent red -> white background
    rgba.save(tmp_path / "a.png")
    Image.new("L", (20, 20), 128).save(tmp_path / "g.jpg")
    Image.new("P", (20, 20), 3).save(tmp_path / "p.gif")
    deep = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))
    deep.save(tmp_path / "d.png")
    Image.new("RGB", (50, 50), (0, 0, 255)).save(tmp_path / "b.webp")
    Image.new("RGB", (50, 50), (0, 255, 0)).save(tmp_path / "c.tiff")
    for name in ("a.png", "g.jpg", "p.gif", "d.png", "b.webp", "c.tiff"):
        x = load_image(tmp_path / name, 64)
        assert x.shape == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(load_image(tmp_path / "a.png", 8), torch.ones(1, 3, 8, 8))
    assert torch.allclose(load_image(tmp_path / "d.png", 8), torch.ones(1, 3, 8, 8))  # 16-bit white stays white


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (60, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # white square at the left end
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: 20 wide, 60 tall, the square on top
    img.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    upright = read_image(tmp_path / "r.jpg")
    assert upright.size == (20, 60)
    top = np.asarray(upright)[:20].mean()
    bottom = np.asarray(upright)[40:].mean()
    assert top > 200 and bottom < 50


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello, not an image", "not a readable image"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "not a readable image|unreadable"),
    ],
)
def test_bad_files_are_refused(tmp_path, content, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    with pytest.raises(MagecError, match=message) as info:
        load_image(bad, 64)
    assert str(bad) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(MagecError, match="no such file"):
        load_image(tmp_path / "nope.png", 64)
    with pytest.raises(MagecError, match="folder"):
        load_image(tmp_path, 64)


def test_png_round_trip(tmp_path):
    x = torch.rand(3, 16, 16) * 2 - 1
    save_png(x, tmp_path / "x.png")
    back = load_image(tmp_path / "x.png", 16)[0]
    assert (back - x).abs().max() <= 1 / 127.5 + 1e-6
    assert tensor_to_pil(x).size == (16, 16)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_outputs_get_normal_permissions(tmp_path):
    import os

    from magec.io.atomic import atomic_dir, write_text

    mask = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
