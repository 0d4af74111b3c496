"""The ``protoexplain`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from protoexplain.checkpoint import CheckpointError
from protoexplain.config import ConfigError, load_config
from protoexplain.malloc_tuning import tune_malloc

DEMO_CONFIG = "synthetic_protopnet"
"""The shipped config of ``protoexplain demo`` (see :mod:`protoexplain.config_files`)."""

DESCRIPTION = """\
protoexplain: train "this looks like that" classifiers (ProtoPNet, XProtoNet) and show where
each prototype lives in an image with learned saliency masks instead of an upsampled 7x7 map.

Start with 'protoexplain demo': it trains a small ProtoPNet on the embedded SyntheticParts
data set on the CPU and writes a run directory (metrics.json, projection.json, one PNG per
prototype, report.html).

On Linux with glibc the command keeps freed tensor memory in the process, which made the
CPU demo a third faster; PROTOEXPLAIN_MALLOC_TUNING=0 turns that off.
"""


def image_count(text: str) -> int | None:
    """``--images-per-prototype``: a positive count, or ``all`` (None: every test image of
    the prototype's class, Huang et al.'s protocol)."""
    if text == "all":
        return None
    count = int(text) if text.isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'all', got {text!r}")
    return count


def positive_int(text: str) -> int:
    """A count option (``--top``, ``--count``): an integer of at least 1."""
    count = int(text) if text.isdigit() else 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return count


_FROM_CONFIG = object()
"""Default of options whose default is the run's config value."""


def _setup_logging(run_dir: Path | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)


def _default_run_dir(config_path: str) -> Path:
    return Path("runs") / Path(config_path).stem


def _first_free(path: Path) -> Path:
    """``path`` itself, or ``path-2``, ``path-3``... so that no earlier run is overwritten."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (log lines are still written)")
    parser.add_argument("--verbose", action="store_true", help="debug-level logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="protoexplain", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train, push and evaluate a model from a YAML config",
        description="Train a ProtoPNet or XProtoNet as CONFIG says (warm-up, joint, push, "
                    "last layer), select the model on the validation split, evaluate it on the "
                    "test split and write the run directory.")
    train.add_argument("config", help="a YAML config file, or the name of a shipped config "
                                        "(e.g. synthetic_protopnet; see configs/)")
    train.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    train.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.epochs=5 "
                            "(repeatable; values are parsed as YAML)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from RUN_DIR/checkpoint.pt")
    _add_progress(train)

    evaluate = commands.add_parser(
        "evaluate", help="recompute the test metrics of a run directory",
        description="Evaluate the selected model of RUN_DIR on the test split and update "
                    "RUN_DIR/metrics.json.")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--device", help="override the run's device (cpu, cuda, ...)")
    _add_progress(evaluate)

    benchmark = commands.add_parser(
        "benchmark", help="compare localization methods against ground truth",
        description="Run every METHOD on the same model, prototypes and test images of "
                    "RUN_DIR and write RUN_DIR/benchmark.json ({method: {metric: value}}) and "
                    "benchmark.md: consistency and stability (Huang et al. 2023), how often "
                    "the peak box holds the part the prototype relies on in that image "
                    "(responsible_part_hit) and how part-consistent and stable the "
                    "prototypes themselves are (oracle_consistency, oracle_stability), "
                    "relevance and "
                    "fidelity (Xu-Darme et al. 2023), energy and pointing game on the object "
                    "and the prototype's part, box IoU, energy / pointing / IoU against the "
                    "boxes of the prototype's finding (sets with labelled boxes, e.g. chest "
                    "X-rays), deletion/insertion, the "
                    "model-randomisation check, and each method's cost.")
    benchmark.add_argument("run_dir", type=Path)
    benchmark.add_argument("--methods", help="comma-separated localization methods (default: "
                                             "the config's localization.evaluation_methods)")
    benchmark.add_argument("--images-per-prototype", type=image_count, default=_FROM_CONFIG,
                           help="test images of its class per prototype, or 'all' (Huang et "
                                "al.'s protocol; default: the config's)")
    benchmark.add_argument("--device", help="override the run's device")
    _add_progress(benchmark)

    explain = commands.add_parser(
        "explain", help="explain new images with the run's prototypes",
        description="For each IMAGE, show the predicted class, its top prototypes, where "
                    "each is found in the image (per localization method) and the training "
                    "image it was projected onto. Writes PNGs and explanations.json.")
    explain.add_argument("run_dir", type=Path)
    explain.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    explain.add_argument("--top", type=positive_int, default=3,
                         help="prototypes per image (default 3)")
    explain.add_argument("--methods", help="comma-separated localization methods")
    explain.add_argument("--out", type=Path, help="default: RUN_DIR/explanations")
    explain.add_argument("--device", help="override the run's device")
    _add_progress(explain)

    demo = commands.add_parser(
        "demo", help="the main job on the embedded SyntheticParts data set (CPU, minutes)",
        description=f"Train and evaluate with the shipped config {DEMO_CONFIG}.yaml and write "
                    "a run directory.")
    demo.add_argument("--out", type=Path,
                      help="run directory (default: runs/demo, or runs/demo-N when taken)")
    demo.add_argument("--set", dest="overrides", action="append", default=[],
                      metavar="KEY=VALUE", help="override a config value (repeatable)")
    _add_progress(demo)

    preview = commands.add_parser(
        "show-data", help="write a PNG contact sheet of a config's data set",
        description="Draw samples of the configured data set with their ground-truth parts, "
                    "keypoints and boxes, so a person can see the task.")
    preview.add_argument("config", nargs="?", default=DEMO_CONFIG,
                         help="YAML config file or shipped config name (default: the demo's)")
    preview.add_argument("--split", default="train", choices=["train", "val", "test"])
    preview.add_argument("--count", type=positive_int, default=16, help="number of samples")
    preview.add_argument("--out", type=Path, default=Path("runs/contact_sheet.png"))
    preview.add_argument("--set", dest="overrides", action="append", default=[],
                         metavar="KEY=VALUE", help="override a config value (repeatable)")
    return parser


def _train(config_path: str, overrides: list[str], out: Path | None, resume: bool,
           progress: bool, verbose: bool) -> int:
    from protoexplain.pipeline import train_and_report

    config = load_config(config_path, overrides)
    run_dir = out or _default_run_dir(config_path)
    if (run_dir / "checkpoint.pt").exists() and not resume:
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or "
                          "--out to start a new one")
    _setup_logging(run_dir, verbose)
    train_and_report(config, run_dir, resume=resume, progress=progress)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not getattr(args, "no_progress", False)
    verbose = getattr(args, "verbose", False)
    try:
        _setup_logging(None, verbose)  # before tune_malloc, so that -v shows what it set;
        tune_malloc()                  # `train` and `demo` add their run's train.log
        if args.command == "train":
            return _train(args.config, args.overrides, args.out, args.resume, progress, verbose)
        if args.command == "demo":
            out = args.out or _first_free(Path("runs/demo"))
            return _train(DEMO_CONFIG, args.overrides, out, False, progress, verbose)
        if args.command == "evaluate":
            from protoexplain.evaluation import headline
            from protoexplain.pipeline import evaluate_run
            from protoexplain.run_dir import load_run

            metrics = evaluate_run(load_run(args.run_dir, args.device), progress=progress)
            print(f"{headline(metrics)} -> {args.run_dir}/metrics.json")
            return 0
        if args.command == "benchmark":
            from protoexplain.benchmark import benchmark_table
            from protoexplain.config import check_localization_methods
            from protoexplain.pipeline import benchmark_run
            from protoexplain.run_dir import load_run

            run = load_run(args.run_dir, args.device)
            methods = (args.methods.split(",") if args.methods
                       else run.config.localization.evaluation_methods)
            run.config.localization.evaluation_methods = methods
            check_localization_methods(run.config, "--methods")
            count = (run.config.localization.images_per_prototype
                     if args.images_per_prototype is _FROM_CONFIG else args.images_per_prototype)
            results = benchmark_run(run, methods, images_per_prototype=count,
                                    progress=progress)
            print(benchmark_table(results))
            return 0
        if args.command == "explain":
            from protoexplain.config import check_localization_methods
            from protoexplain.explain import explain_images
            from protoexplain.run_dir import load_run

            run = load_run(args.run_dir, args.device)
            out = args.out or args.run_dir / "explanations"
            methods = args.methods.split(",") if args.methods else None
            if methods:  # named methods are checked as benchmark's are, before any work
                run.config.localization.evaluation_methods = methods
                check_localization_methods(run.config, "--methods")
            for result in explain_images(run, args.images, out, top_k=args.top,
                                         methods=methods):
                print(f"{result['image']}: {result['predicted_class']} "
                      f"({result['probability']:.2f}) -> {result['picture']}")
            return 0
        if args.command == "show-data":
            from protoexplain.data.contact_sheet import write_contact_sheet
            from protoexplain.factory import build_dataset

            config = load_config(args.config, args.overrides)
            dataset = build_dataset(config, args.split, augment=False)
            path = write_contact_sheet(dataset, args.out, count=args.count)
            print(f"wrote {path}")
            return 0
    except (ConfigError, CheckpointError, OSError) as error:
        print(f"protoexplain: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        from protoexplain.training_run import TrainingStopped

        if isinstance(error, TrainingStopped):
            logging.getLogger("protoexplain").error("%s", error)
            return 1
        raise
    return 1


if __name__ == "__main__":
    sys.exit(main())
