"""``magec train-describer celeba --root DIR --out PATH``: train the paper's CelebA 40-attribute F."""

from __future__ import annotations

import argparse

from magec.cli.options import add_device_and_seed, int_at_least, positive_float, positive_int

#: The ResNets the CelebA describer supports (``magec.describers.celeba.ARCHITECTURES``; a test keeps them equal).
ARCHITECTURES = ("resnet18", "resnet34", "resnet50")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-describer", help="train an attribute describer F (CelebA's 40 attributes) for --describer celeba:PATH"
    )
    p.add_argument("dataset", choices=["celeba"], help="dataset format")
    p.add_argument(
        "--root", required=True, help="CelebA folder (list_attr_celeba.txt, list_eval_partition.txt, img_align_celeba/)"
    )
    p.add_argument(
        "--out", required=True, help="describer file to write (.safetensors); OUT.ckpt holds the resumable checkpoint"
    )
    p.add_argument("--arch", default="resnet18", choices=ARCHITECTURES, help="torchvision ResNet (default resnet18)")
    p.add_argument(
        "--pretrained",
        metavar="PATH",
        help="torchvision ImageNet weights for the backbone, e.g. resnet18-f37072fd.pth (default: random init)",
    )
    p.add_argument(
        "--input-size", type=int_at_least(32, 1024), default=128, help="network input side in pixels (default 128)"
    )
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs over the train split (default 5)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--limit", type=positive_int, help="use at most N images per split (quick runs)")
    p.add_argument(
        "--workers",
        type=int_at_least(0, 64),
        default=2,
        help="image-loading processes (default 2; 0 = in the main process)",
    )
    p.add_argument(
        "--checkpoint-every", type=positive_int, default=500, help="also checkpoint every N batches (default 500)"
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing OUT.ckpt and start over")
    p.add_argument(
        "--eval-only", action="store_true", help="only print per-attribute test accuracy of the describer at --out"
    )
    p.add_argument("--force", action="store_true", help="replace --out even if it is not a describer magec wrote")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_device_and_seed(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from magec.describers.celeba import CelebAConfig, CelebADescriber, is_magec_describer
    from magec.describers.celeba_training import (
        DescriberTraining,
        evaluate_attributes,
        format_accuracy,
        load_celeba,
        train_celeba_describer,
    )
    from magec.devices import resolve_device
    from magec.io.output_folder import check_output_file

    device = resolve_device(args.device)
    if not args.eval_only:
        training = DescriberTraining(
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
            workers=args.workers,
            limit=args.limit,
        )
        config = CelebAConfig(arch=args.arch, input_size=args.input_size)
        check_output_file(args.out, args.force, ours=is_magec_describer)
        result = train_celeba_describer(
            args.root,
            args.out,
            config,
            training,
            device=device,
            pretrained=args.pretrained,
            fresh=args.fresh,
            progress=not args.quiet,
        )
        print(f"wrote {result.out} (resumable checkpoint: {result.checkpoint})")
    describer = CelebADescriber.load(args.out, device)
    accuracy = evaluate_attributes(
        describer,
        load_celeba(args.root),
        "test",
        args.batch_size,
        device,
        args.limit,
        args.workers,
        progress=not args.quiet,
    )
    print("test accuracy per attribute:")
    print(format_accuracy(accuracy))
    return 0
