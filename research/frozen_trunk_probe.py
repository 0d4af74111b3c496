"""Do a frozen trunk's features separate a data set's classes? A linear probe: multinomial
logistic regression (scikit-learn) on the trunk's latent map, average-pooled and max-pooled
over positions, fit on the training split and scored on the test split of a config's data.

It tells apart two reasons for a prototype network at chance: features that do not hold the
classes (the probe is at chance too) and a training too short for the prototypes (the probe
is well above chance).

    python research/frozen_trunk_probe.py configs/synthetic_protopnet_lite0.yaml \
        --set "data.options.num_classes=4" \
        --set "data.options.num_samples={train: 160, val: 32, test: 64}" \
        --out research/results/frozen_trunk_probe_synthetic_lite0_160images
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # study_io

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from study_io import publish_report
from torch import nn

from protoexplain.config import load_config
from protoexplain.factory import build_dataset, make_loader
from prototypes.backbones import build_backbone
from prototypes.trunk_cache import TrunkMaps

POOLINGS = ("average", "max")
"""How the latent map (B, C, h, w) becomes one vector per image."""


def pooled_features(trunk: nn.Module, loader, mean: torch.Tensor, std: torch.Tensor,
                    progress: bool = True) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per pooling of :data:`POOLINGS`, the (N, C) features of every image of ``loader``
    (images in [0, 1], normalised here with ``mean`` and ``std``), and the (N,) labels."""
    maps = TrunkMaps.compute(
        trunk, loader, normalize=lambda images: ((images - mean.view(1, -1, 1, 1))
                                                 / std.view(1, -1, 1, 1)),
        device="cpu", progress=progress)
    return ({"average": maps.maps.mean(dim=(2, 3)), "max": maps.maps.amax(dim=(2, 3))},
            maps.labels)


def probe_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                   test_y: torch.Tensor) -> tuple[float, float]:
    """(training, test) accuracy of a logistic regression on standardised features."""
    scaler = StandardScaler().fit(train_x.numpy())
    probe = LogisticRegression(max_iter=2000).fit(scaler.transform(train_x.numpy()),
                                                  train_y.numpy())
    return (float(probe.score(scaler.transform(train_x.numpy()), train_y.numpy())),
            float(probe.score(scaler.transform(test_x.numpy()), test_y.numpy())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config whose data and trunk are probed")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--out", type=Path, required=True,
                        help="output path without extension (.json and .md are written)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    torch.manual_seed(config.seed)
    trunk, _ = build_backbone(config.model.backbone, config.model.pretrained,
                              **config.model.backbone_options)
    mean, std = torch.tensor(config.model.mean), torch.tensor(config.model.std)
    splits = {}
    for split in ("train", "test"):
        loader = make_loader(build_dataset(config, split, augment=False),
                             config.data.eval_batch_size, config)
        splits[split] = pooled_features(trunk, loader, mean, std, not args.no_progress)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    classes = int(train_y.max()) + 1
    rows = {pooling: probe_accuracy(train_x[pooling], train_y, test_x[pooling], test_y)
            for pooling in POOLINGS}
    text = (f"Linear probe on the frozen {config.model.backbone} trunk "
            f"(pretrained: {config.model.pretrained}), {Path(args.config).name}, "
            f"{len(train_y)} training / {len(test_y)} test images, {classes} classes "
            f"(chance {1 / classes:.3f})\n\n| pooling | training accuracy | test accuracy |\n"
            "|---|---:|---:|\n"
            + "".join(f"| {p} | {a:.3f} | {b:.3f} |\n" for p, (a, b) in rows.items()))
    publish_report(args.out, text, {
        "config": args.config, "overrides": args.overrides,
        "backbone": config.model.backbone, "pretrained": config.model.pretrained,
        "train_images": len(train_y), "test_images": len(test_y), "classes": classes,
        "environment": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "accuracy": {p: {"train": a, "test": b} for p, (a, b) in rows.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
