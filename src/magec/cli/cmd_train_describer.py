"""``magec train-describer celeba --root DIR --out PATH``: train the paper's CelebA 40-attribute F."""

from __future__ import annotations

import argparse

from magec.cli.common import add_device_and_seed


def register(sub: argparse._SubParsersAction) -> None:
    from magec.describers.celeba import ARCHITECTURES

    p = sub.add_parser("train-describer", help="train an attribute describer F (CelebA's 40 attributes) for --describer celeba:PATH")
    p.add_argument("dataset", choices=["celeba"], help="dataset format")
    p.add_argument("--root", required=True, help="CelebA folder (list_attr_celeba.txt, list_eval_partition.txt, img_align_celeba/)")
    p.add_argument("--out", required=True, help="describer file to write (.safetensors); OUT.ckpt holds the resumable checkpoint")
    p.add_argument("--arch", default="resnet18", choices=ARCHITECTURES, help="torchvision ResNet (default resnet18)")
    p.add_argument("--pretrained", metavar="PATH", help="torchvision ImageNet weights for the backbone, e.g. resnet18-f37072fd.pth (default: random init)")
    p.add_argument("--input-size", type=int, default=128, help="network input side in pixels (default 128)")
    p.add_argument("--epochs", type=int, default=5, help="epochs over the train split (default 5)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--limit", type=int, help="use at most N images per split (quick runs)")
    p.add_argument("--workers", type=int, default=2, help="image-loading processes (default 2)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="also checkpoint every N batches (default 500)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing OUT.ckpt and start over")
    p.add_argument("--eval-only", action="store_true", help="only print per-attribute test accuracy of the describer at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.describers.celeba import CelebAConfig, CelebADescriber
    from magec.describers.celeba_training import DescriberTraining, evaluate_attributes, format_accuracy, load_celeba, train_celeba_describer
    from magec.devices import resolve_device

    device = resolve_device(args.device)
    if not args.eval_only:
        training = DescriberTraining(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
            checkpoint_every=args.checkpoint_every, workers=args.workers, limit=args.limit,
        )
        result = train_celeba_describer(
            args.root, args.out, CelebAConfig(arch=args.arch, input_size=args.input_size), training,
            device=device, pretrained=args.pretrained, fresh=args.fresh, progress=not args.quiet,
        )
        print(f"wrote {result.out} (resumable checkpoint: {result.checkpoint})")
    describer = CelebADescriber.load(args.out, device)
    accuracy = evaluate_attributes(describer, load_celeba(args.root), "test", args.batch_size, device, args.limit, args.workers, progress=not args.quiet)
    print("test accuracy per attribute:")
    print(format_accuracy(accuracy))
    return 0
