"""What localizing a CUB-size ProtoPNet costs: push with upsample and with HDM, and the
localization benchmark over every test image of each prototype's class.

A randomly initialised ProtoPNet of the CUB-200-2011 recipes' size (``configs/
cub_protopnet_resnet34.yaml`` or ``..._vgg19.yaml``: 200 classes x 10 prototypes = 2000
prototypes, 224 px) runs on random images: the cost depends on the counts and sizes, not on
what the model learned or on the pixels (HDM at push runs one stage, so no early stop
shortens it). It times:

- ``push``: :func:`prototypes.push` (one forward pass per training image, the nearest latent
  patch of every prototype) over ``--push-images`` images, extrapolated to CUB's 5994
  training images;
- ``push localization``: each method localizing every prototype on its source image (2000
  pairs, what ``localization.push_method`` costs at push);
- ``benchmark localization``: each method localizing every prototype on every test image of
  its class (CUB's 5794 test images x 10 prototypes of their class = 57 940 pairs; the
  metrics the benchmark computes on them come on top and are not timed here).

A pair costs the same whichever image and prototype it holds, so each method's time per pair
is measured on ``--pairs`` pairs (default: all of them) and multiplied by the pair counts; the
table says which numbers are extrapolated. Pairs go through ``prototypes.localize`` in batches:
``--batch auto`` (the default on CUDA) picks, per method, the largest batch whose peak memory
fits the device's free memory (:func:`hdm.memory.batch_size_for_memory`: two probe batches fit
a linear memory model); the table gives the batch used and the peak GPU memory measured at it.

Run (GPU): ``python benchmarks/cub_scale.py --device cuda --pairs 512``; a tiny CPU check:
``OMP_NUM_THREADS=1 python benchmarks/cub_scale.py --image-size 64 --classes 4
--prototypes-per-class 2 --push-images 8 --pairs 4 --batch 2 --hdm-steps 2``. It prints a
Markdown table and writes ``benchmarks/results/cub_scale_<backbone>_<device>.json`` (``--out``).
Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from hdm.memory import batch_size_for_memory, cuda_peak_bytes, device_memory_budget
from protoexplain.config import load_config
from protoexplain.factory import build_model
from prototypes import localize, push

RESULTS = Path(__file__).parent / "results"
CUB_TRAIN_IMAGES = 5994
CUB_TEST_IMAGES = 5794


def cub_model(backbone: str, classes: int, prototypes_per_class: int, image_size: int,
              device: torch.device) -> torch.nn.Module:
    """The CUB recipe's ProtoPNet with random weights (``configs/cub_protopnet_vgg19.yaml`` for
    vgg19, else ``cub_protopnet_resnet34.yaml`` with its trunk set to ``backbone``)."""
    torch.manual_seed(0)
    recipe = "cub_protopnet_vgg19" if backbone == "vgg19" else "cub_protopnet_resnet34"
    config = load_config(recipe, [
        f"model.backbone={backbone}", "model.pretrained=null",
        f"model.prototypes_per_class={prototypes_per_class}"])
    return build_model(config, classes, image_size, load_pretrained=False).to(device).eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_push(model: torch.nn.Module, images: int, batch: int, classes: int, size: int,
              device: torch.device) -> float:
    """Seconds per training image of :func:`prototypes.push` over ``images`` random images
    whose labels cycle through the classes (push needs every class)."""
    generator = torch.Generator(device=device).manual_seed(0)
    loader = [
        {
            "image": torch.rand(min(batch, images - start), 3, size, size, device=device,
                                generator=generator),
            "label": torch.arange(start, min(start + batch, images), device=device) % classes,
            "index": torch.arange(start, min(start + batch, images), device=device),
        }
        for start in range(0, images, batch)
    ]
    with torch.no_grad():
        model(loader[0]["image"][:2])  # warm-up
    synchronize(device)
    started = time.perf_counter()
    push(model, loader)
    synchronize(device)
    return (time.perf_counter() - started) / images


def localization_inputs(model: torch.nn.Module, batch: int, size: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator(device=device).manual_seed(1)
    images = torch.rand(batch, 3, size, size, device=device, generator=generator)
    ids = torch.randint(0, model.num_prototypes, (batch,), device=device, generator=generator)
    return images, ids


def choose_batch(model: torch.nn.Module, method: str, options: dict[str, Any], size: int,
                 device: torch.device, budget: int, maximum: int) -> dict[str, Any]:
    """The automatic batch of ``method`` for the device's memory budget (CUDA)."""

    def peak(batch: int) -> int:
        images, ids = localization_inputs(model, batch, size, device)
        return cuda_peak_bytes(lambda: localize(model, images, ids, method, **options), device)

    choice = batch_size_for_memory(peak, budget, maximum=maximum)
    return {"batch": choice.batch, "fixed_mib": choice.fixed_bytes / 2**20,
            "mib_per_pair": choice.bytes_per_sample / 2**20,
            "budget_mib": choice.budget_bytes / 2**20,
            "predicted_peak_mib": choice.predicted_peak(choice.batch) / 2**20}


def time_pairs(model: torch.nn.Module, method: str, options: dict[str, Any], pairs: int,
               batch: int, size: int, device: torch.device) -> dict[str, Any]:
    """Seconds per pair of ``prototypes.localize`` over ``pairs`` pairs in batches of
    ``batch``, and the peak GPU memory of those calls (CUDA)."""
    images, ids = localization_inputs(model, batch, size, device)
    localize(model, images[:1], ids[:1], method, **options)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    synchronize(device)
    started = time.perf_counter()
    done = 0
    while done < pairs:
        count = min(batch, pairs - done)
        localize(model, images[:count], ids[:count], method, **options)
        done += count
    synchronize(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"pairs_timed": pairs, "batch": batch, "seconds_per_pair": seconds / pairs,
            "peak_memory_mib": peak}


def table(record: dict[str, Any]) -> str:
    lines = [
        f"{record['backbone']} {record['image_size']} px, {record['prototypes']} prototypes "
        f"({record['classes']} classes), random weights; device {record['device']}",
        "",
        "| step | pairs or images | timed | batch | s per pair or image | total s | "
        "peak GPU MiB |",
        "|---|---|---|---|---|---|---|",
        f"| push (forward over the training set) | {record['train_images']} images | "
        f"{record['push_images_timed']} | {record['push_batch']} | "
        f"{record['push_seconds_per_image']:.4f} | {record['push_seconds']:.1f} | - |",
    ]
    for row in record["localization"]:
        peak = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
        for step in ("push", "benchmark"):
            pairs = record[f"{step}_pairs"]
            lines.append(
                f"| {step} localization, {row['method']} | {pairs} pairs | "
                f"{row['pairs_timed']} | {row['batch']} | {row['seconds_per_pair']:.4f} | "
                f"{row['seconds_per_pair'] * pairs:.1f} | {peak} |"
            )
    lines.append("")
    lines.append("Totals are the time per pair (or image) times the count; "
                 "where fewer were timed, they are extrapolated.")
    for row in record["localization"]:
        if row.get("auto_batch"):
            auto = row["auto_batch"]
            lines.append(
                f"Automatic batch for {row['method']}: {auto['batch']} "
                f"(memory {auto['fixed_mib']:.0f} MiB + {auto['mib_per_pair']:.1f} MiB per pair, "
                f"budget {auto['budget_mib']:.0f} MiB, predicted peak "
                f"{auto['predicted_peak_mib']:.0f} MiB)."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backbone", default="resnet34",
                        help="resnet34 or vgg19 (the CUB recipes; any backbone name of "
                        "prototypes.backbones works)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--prototypes-per-class", type=int, default=10)
    parser.add_argument("--train-images", type=int, default=CUB_TRAIN_IMAGES,
                        help="training images push passes (CUB: 5994)")
    parser.add_argument("--test-images", type=int, default=CUB_TEST_IMAGES,
                        help="test images of the benchmark (CUB: 5794)")
    parser.add_argument("--push-images", type=int, default=400,
                        help="training images actually pushed and timed (at least --classes)")
    parser.add_argument("--push-batch", type=int, default=100)
    parser.add_argument("--methods", default="upsample,hdm", help="comma-separated")
    parser.add_argument("--pairs", type=int,
                        help="pairs timed per method (default: all the benchmark's pairs)")
    parser.add_argument("--batch", default="auto",
                        help="pairs per localize call, or 'auto' (CUDA: from free memory)")
    parser.add_argument("--max-batch", type=int, default=512,
                        help="the largest automatic batch")
    parser.add_argument("--hdm-steps", type=int,
                        help="HDM's benchmark_steps and auxiliary_steps (default: its own 50)")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="bfloat16 autocast in HDM's optimisation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="JSON to write (default: see above)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.push_images < args.classes:
        parser.error(f"--push-images must be at least --classes ({args.classes}): push needs "
                     "an image of every class")
    budget = device_memory_budget(device)
    if args.batch == "auto" and budget is None:
        parser.error("--batch auto reads the free memory of a CUDA device; on "
                     f"{device.type} give --batch N")
    model = cub_model(args.backbone, args.classes, args.prototypes_per_class, args.image_size,
                      device)
    prototypes = model.num_prototypes
    push_pairs = prototypes
    benchmark_pairs = args.test_images * args.prototypes_per_class
    push_seconds_per_image = time_push(model, args.push_images, args.push_batch, args.classes,
                                       args.image_size, device)
    rows = []
    for method in args.methods.split(","):
        options: dict[str, Any] = {}
        if method == "hdm":
            if args.hdm_steps is not None:
                options.update(benchmark_steps=args.hdm_steps, auxiliary_steps=args.hdm_steps)
            if args.mixed_precision:
                options["mixed_precision"] = True
        auto = None
        if args.batch == "auto":
            assert budget is not None
            auto = choose_batch(model, method, options, args.image_size, device, budget,
                                args.max_batch)
            batch = auto["batch"]
        else:
            batch = int(args.batch)
        pairs = min(args.pairs or benchmark_pairs, benchmark_pairs)
        row = {"method": method, "options": options, "auto_batch": auto,
               **time_pairs(model, method, options, pairs, batch, args.image_size, device)}
        rows.append(row)
        print(f"{method}: {row['seconds_per_pair']:.4f} s per pair at batch {batch} "
              f"({pairs} pairs timed)", flush=True)
    record = {
        "command": "python benchmarks/cub_scale.py " + " ".join(
            f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
            if v not in (None, False)),
        "backbone": args.backbone, "image_size": args.image_size, "classes": args.classes,
        "prototypes": prototypes, "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "train_images": args.train_images, "push_images_timed": args.push_images,
        "push_batch": args.push_batch, "push_seconds_per_image": push_seconds_per_image,
        "push_seconds": push_seconds_per_image * args.train_images,
        "push_pairs": push_pairs, "benchmark_pairs": benchmark_pairs,
        "localization": rows,
    }
    text = table(record)
    print(text)
    out = args.out or RESULTS / f"cub_scale_{args.backbone}_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".md").write_text(text)
    print(f"wrote {out}")
    return record


if __name__ == "__main__":
    main()
