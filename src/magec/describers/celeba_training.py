"""Training and evaluating the CelebA 40-attribute describer on the real CelebA files.

Input: a CelebA folder in the official layout (``Anno/list_attr_celeba.txt``,
``Eval/list_eval_partition.txt``, ``Img/img_align_celeba/*.jpg``) or torchvision's flat one
(``list_attr_celeba.txt``, ``list_eval_partition.txt``, ``img_align_celeba/`` under ``ROOT`` or
``ROOT/celeba``). The standard splits come from ``list_eval_partition.txt`` (0 train, 1 val, 2 test).

Training minimises the binary cross-entropy over the 40 attributes (Adam, horizontal flips). It is
resumable: a checkpoint ``OUT.ckpt`` is written atomically every ``checkpoint_every`` batches and at
each epoch's end, and rerunning the same command continues from it, reproducing the uninterrupted run
(the batch order and flips of each epoch depend only on the seed and the epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from magec import validation
from magec.describers.celeba import CelebAConfig, CelebADescriber
from magec.errors import MagecError, file_error
from magec.io.atomic import atomic_path
from magec.io.checkpoints import read_checkpoint
from magec.io.images import center_square, pil_to_tensor, read_image
from magec.seeding import generator_for

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}


# ---- reading the CelebA files -----------------------------------------------------------------


@dataclass(frozen=True)
class CelebARecords:
    """Attribute labels (0/1) and split of every image listed in ``list_attr_celeba.txt``."""

    attributes: tuple[str, ...]
    files: tuple[str, ...]
    labels: torch.Tensor  # (N, n_attributes) float 0/1
    splits: torch.Tensor  # (N,) int 0/1/2
    image_dir: Path

    def indices(self, split: str, limit: int | None = None) -> list[int]:
        """Row indices of ``split`` (train / val / test), at most ``limit`` of them (the first ones)."""
        idx = torch.nonzero(self.splits == SPLITS[split]).flatten().tolist()
        return idx[:limit] if limit is not None else idx


def _first_existing(root: Path, candidates: tuple[str, ...], what: str, want_dir: bool = False) -> Path:
    for rel in candidates:
        path = root / rel
        if path.is_dir() if want_dir else path.is_file():
            return path
    raise file_error(root, f"no {what} found (looked for {', '.join(candidates)})")


def read_attribute_file(path: Path) -> tuple[tuple[str, ...], list[str], torch.Tensor]:
    """Parse ``list_attr_celeba.txt``: a count line, the attribute names, then ``name v1 ... vK`` rows of -1/1."""
    try:
        lines = [ln.split() for ln in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"unreadable ({exc})") from None
    lines = [ln for ln in lines if ln]
    if len(lines) < 2 or len(lines[0]) != 1 or not lines[0][0].isdigit():
        raise file_error(path, "line 1 must be the number of images (list_attr_celeba.txt format)")
    count, names = int(lines[0][0]), tuple(lines[1])
    rows = lines[2:]
    if len(rows) != count:
        raise file_error(path, f"line 1 announces {count} images but {len(rows)} rows follow")
    files, values = [], []
    for i, row in enumerate(rows, start=3):
        if len(row) != len(names) + 1:
            raise file_error(path, f"line {i}: expected an image name and {len(names)} values, got {len(row)} fields")
        try:
            vals = [int(v) for v in row[1:]]
        except ValueError:
            raise file_error(path, f"line {i}: attribute values must be -1 or 1") from None
        if any(v not in (-1, 1) for v in vals):
            raise file_error(path, f"line {i}: attribute values must be -1 or 1")
        files.append(row[0])
        values.append(vals)
    labels = (torch.tensor(values, dtype=torch.float32) + 1.0) / 2.0
    return names, files, labels.reshape(len(files), len(names))


def read_partition_file(path: Path) -> dict[str, int]:
    """Parse ``list_eval_partition.txt``: ``name split`` rows with split 0 (train), 1 (val) or 2 (test)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise file_error(path, f"unreadable ({exc})") from None
    out: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise file_error(path, f"line {i}: expected '<image name> <0|1|2>'")
        out[parts[0]] = int(parts[1])
    return out


def load_celeba(root: str | Path) -> CelebARecords:
    """Find and parse the CelebA annotation files under ``root`` (official or torchvision layout)."""
    root = Path(root)
    if not root.is_dir():
        raise file_error(root, "no such folder (expected the CelebA root)")
    attr = _first_existing(
        root,
        ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt", "celeba/list_attr_celeba.txt"),
        "list_attr_celeba.txt",
    )
    part = _first_existing(
        root,
        ("list_eval_partition.txt", "Eval/list_eval_partition.txt", "celeba/list_eval_partition.txt"),
        "list_eval_partition.txt",
    )
    images = _first_existing(
        root,
        ("img_align_celeba", "Img/img_align_celeba", "celeba/img_align_celeba"),
        "img_align_celeba folder",
        want_dir=True,
    )
    names, files, labels = read_attribute_file(attr)
    partition = read_partition_file(part)
    missing = [f for f in files if f not in partition]
    if missing:
        raise file_error(part, f"{len(missing)} image(s) of {attr.name} have no split, e.g. {missing[0]}")
    splits = torch.tensor([partition[f] for f in files], dtype=torch.long)
    return CelebARecords(names, tuple(files), labels, splits, images)


class CelebAImages(Dataset):
    """Images of some rows of ``records`` as ([-1, 1] tensors of ``size`` x ``size``, 0/1 label vectors)."""

    def __init__(self, records: CelebARecords, size: int) -> None:
        self.records = records
        self.size = size

    def __len__(self) -> int:
        return len(self.records.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = read_image(self.records.image_dir / self.records.files[i])
        return pil_to_tensor(center_square(img, self.size))[0], self.records.labels[i]


# ---- training -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DescriberTraining:
    """Optimisation settings (the paper does not give them; these train a ResNet-18 well on CelebA)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-5
    seed: int = 0
    checkpoint_every: int = 500
    workers: int = 2
    #: At most this many images per split (quick runs and tests); None = all.
    limit: int | None = None
    flip: bool = True

    def __post_init__(self) -> None:
        validation.integer("--epochs", self.epochs, 1)
        validation.integer("--batch-size", self.batch_size, 1)
        validation.positive("--lr", self.lr)
        validation.non_negative("weight decay", self.weight_decay)
        validation.integer("--seed", self.seed, 0)
        validation.integer("--checkpoint-every", self.checkpoint_every, 1)
        validation.integer("--workers", self.workers, 0, 64)
        if self.limit is not None:
            validation.integer("--limit", self.limit, 1)


@dataclass
class TrainingResult:
    out: Path
    checkpoint: Path
    epoch_losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    resumed_from: tuple[int, int] | None = None


def _seed_for(*parts: int) -> int:
    """A well-mixed seed from integers (seed, epoch, batch...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    perm = torch.randperm(n, generator=generator_for(_seed_for(seed, epoch))).tolist()
    return [perm[i : i + batch_size] for i in range(0, n, batch_size)]


def checkpoint_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def _save_checkpoint(
    path: Path,
    model: CelebADescriber,
    opt: torch.optim.Optimizer,
    run_key: str,
    epoch: int,
    step: int,
    losses: list[float],
    vals: list[float],
    running: tuple[float, int],
) -> None:
    state = {
        "format": "magec-celeba-training",
        "run": run_key,
        "epoch": epoch,
        "step": step,
        "model": model.net.state_dict(),
        "optimizer": opt.state_dict(),
        "epoch_losses": list(losses),
        "val_accuracy": list(vals),
        "running": [float(running[0]), int(running[1])],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_celeba_describer(
    root: str | Path,
    out: str | Path,
    config: CelebAConfig | None = None,
    training: DescriberTraining = DescriberTraining(),
    device: torch.device | str = "cpu",
    pretrained: str | Path | None = None,
    fresh: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainingResult:
    """Train (or resume training) a CelebA describer; the final describer is saved to ``out``.

    ``config.attributes`` is taken from the attribute file's header, so any CelebA-format file works.
    ``pretrained`` is an optional torchvision ImageNet checkpoint for the backbone (ignored on resume).
    """
    from tqdm.auto import tqdm

    out = Path(out)
    records = load_celeba(root)
    config = config or CelebAConfig()
    config = CelebAConfig(config.arch, config.input_size, records.attributes, config.mean, config.std)
    train_idx = records.indices("train", training.limit)
    val_idx = records.indices("val", training.limit)
    if not train_idx:
        raise file_error(root, "the train split (0 in list_eval_partition.txt) is empty")
    # The batch order depends on these; a checkpoint of another run cannot be continued.
    run_key = (
        f"{config.to_json()}|bs={training.batch_size}|seed={training.seed}|n={len(train_idx)}"
        f"|lr={training.lr}|flip={training.flip}"
    )

    device = torch.device(device)
    model = CelebADescriber(config, seed=training.seed)
    opt = torch.optim.AdamW(model.net.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    ckpt = checkpoint_path(out)
    result = TrainingResult(out, ckpt)
    start_epoch, start_step, running = 0, 0, (0.0, 0)
    if ckpt.exists() and not fresh:
        state = read_checkpoint(ckpt, "a magec CelebA training checkpoint")
        if not isinstance(state, dict) or state.get("format") != "magec-celeba-training":
            raise file_error(ckpt, "not a magec CelebA training checkpoint (delete it or pass --fresh)")
        if state["run"] != run_key:
            raise file_error(
                ckpt,
                "was written by a run with other settings or data (resuming needs the same --arch/--input-size/"
                "--batch-size/--lr/--seed/--limit; or pass --fresh)",
            )
        model.net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        result.epoch_losses, result.val_accuracy = list(state["epoch_losses"]), list(state["val_accuracy"])
        running = (float(state["running"][0]), int(state["running"][1]))
        result.resumed_from = (start_epoch, start_step)
        log(f"resuming from {ckpt} (epoch {start_epoch + 1}, batch {start_step})")
    elif pretrained is not None:
        model.load_imagenet_backbone(pretrained)
    model.to(device)
    # Moving the model after loading the optimizer state keeps them on one device.
    for st in opt.state.values():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and k != "step":
                st[k] = v.to(device)

    train_set = torch.utils.data.Subset(CelebAImages(records, config.input_size), train_idx)
    for epoch in range(start_epoch, training.epochs):
        batches = _batches(len(train_idx), training.batch_size, training.seed, epoch)
        first = start_step if epoch == start_epoch else 0
        if epoch != start_epoch:
            running = (0.0, 0)
        loader = DataLoader(train_set, batch_sampler=batches[first:], num_workers=training.workers)
        model.net.train(True)
        model.net.requires_grad_(True)
        bar = tqdm(
            total=len(batches),
            initial=first,
            desc=f"epoch {epoch + 1}/{training.epochs}",
            disable=not progress,
            leave=False,
        )
        for b, (x, y) in enumerate(loader, start=first):
            x, y = x.to(device), y.to(device)
            if training.flip:
                flip = torch.rand(x.shape[0], generator=generator_for(_seed_for(training.seed, epoch, b))) < 0.5
                x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.binary_cross_entropy_with_logits(model.logits(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running = (running[0] + float(loss.detach()) * x.shape[0], running[1] + x.shape[0])
            bar.update(1)
            bar.set_postfix(loss=f"{running[0] / running[1]:.4f}")
            if (b + 1) % training.checkpoint_every == 0 and b + 1 < len(batches):
                _save_checkpoint(
                    ckpt, model, opt, run_key, epoch, b + 1, result.epoch_losses, result.val_accuracy, running
                )
        bar.close()
        result.epoch_losses.append(running[0] / max(running[1], 1))
        msg = f"epoch {epoch + 1}/{training.epochs}: train BCE {result.epoch_losses[-1]:.4f}"
        if val_idx:
            acc = evaluate_attributes(
                model, records, "val", training.batch_size, device, training.limit, training.workers, progress=False
            )
            result.val_accuracy.append(float(np.mean(list(acc.values()))))
            msg += f", val mean accuracy {result.val_accuracy[-1]:.4f}"
        log(msg)
        _save_checkpoint(ckpt, model, opt, run_key, epoch + 1, 0, result.epoch_losses, result.val_accuracy, (0.0, 0))

    model.requires_grad_(False)
    model.eval()
    model.cpu().save(out)
    return result


@torch.no_grad()
def evaluate_attributes(
    describer: CelebADescriber,
    records: CelebARecords,
    split: str = "test",
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Per-attribute accuracy (prediction = probability > 0.5) of ``describer`` on a CelebA split."""
    from tqdm.auto import tqdm

    idx = records.indices(split, limit)
    if not idx:
        raise MagecError(f"the {split} split is empty")
    if tuple(describer.config.attributes) != tuple(records.attributes):
        raise MagecError("the describer's attributes differ from the dataset's list_attr_celeba.txt header")
    was_training = describer.net.training
    describer.net.eval()
    data = torch.utils.data.Subset(CelebAImages(records, describer.config.input_size), idx)
    correct = torch.zeros(len(records.attributes), dtype=torch.float64)
    for x, y in tqdm(
        DataLoader(data, batch_size=batch_size, num_workers=workers),
        desc=f"evaluating {split}",
        disable=not progress,
        leave=False,
    ):
        pred = (describer.logits(x.to(device)) > 0).float().cpu()
        correct += (pred == y).double().sum(0)
    describer.net.train(was_training)
    return {name: float(c) / len(idx) for name, c in zip(records.attributes, correct)}


def format_accuracy(accuracy: dict[str, float]) -> str:
    """A two-column table of per-attribute accuracies and their mean."""
    width = max(len(k) for k in accuracy)
    lines = [f"{name:<{width}}  {acc * 100:6.2f}%" for name, acc in accuracy.items()]
    lines.append(f"{'mean':<{width}}  {float(np.mean(list(accuracy.values()))) * 100:6.2f}%")
    return "\n".join(lines)
