"""The ``protoexplain`` command line."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from protoexplain import distributed
from protoexplain.checkpoint import CheckpointError
from protoexplain.config import ConfigError, load_config
from protoexplain.malloc_tuning import tune_malloc
from protoexplain.run_lock import RunDirError, run_lock

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""

DEMO_CONFIG = "synthetic_protopnet"
"""The shipped config of ``protoexplain demo`` (see :mod:`protoexplain.config_files`)."""

DESCRIPTION = """\
protoexplain: train "this looks like that" classifiers (ProtoPNet, XProtoNet) and show where
each prototype lives in an image with learned saliency masks instead of an upsampled 7x7 map.

Start with 'protoexplain demo': it trains a small ProtoPNet on the embedded SyntheticParts
data set on the CPU and writes a run directory (metrics.json, projection.json, one PNG per
prototype, report/index.html).

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


OVERWRITE_HELP = ("replace the run the directory holds: removes its run files (config.yaml, "
                  "checkpoint.pt, metrics.json, ..., prototypes/, explanations/, report/) and "
                  "nothing else; without it such a directory is refused")


def png_file(text: str) -> Path:
    """``show-data --out``: a file name ending in ``.png`` that is not a folder."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"expected a file name ending in .png, got {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder; name a .png file in it")
    return path


_FROM_CONFIG = object()
"""Default of options whose default is the run's config value."""


DISTRIBUTED_COMMANDS = ("train", "demo", "benchmark", "report")
"""The commands that run on several processes under torchrun."""


def _setup_logging(run_dir: Path | None, verbose: bool) -> None:
    """Log lines to stderr and, with ``run_dir``, to its ``train.log``; under torchrun only
    rank 0 logs (the others say only warnings and errors, and write no file)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    level = logging.DEBUG if verbose else logging.INFO
    if distributed.launch_rank() != 0:
        level, run_dir = logging.WARNING, None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(run_dir / "train.log"))
    logging.basicConfig(level=level, handlers=handlers,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", force=True)


@contextmanager
def _locked(run_dir: Path, command: str) -> Iterator[Path]:
    """:func:`run_lock` of ``run_dir``; under torchrun rank 0 holds it for all processes
    (every process raises when it is refused)."""
    with ExitStack() as stack:
        distributed.on_main(lambda: stack.enter_context(run_lock(run_dir, command)))
        yield run_dir


def _default_run_dir(config_path: str) -> Path:
    return Path("runs") / Path(config_path).stem


def _first_free(path: Path) -> Path:
    """``path`` itself, or ``path-2``, ``path-3``... so that no earlier run is overwritten."""
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}-{number}")
    return candidate


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` and the progress options of a command that loads a run directory."""
    parser.add_argument("--device", help="override the run's device (cpu, cuda, ...)")
    _add_progress(parser)


def _add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable, parsed as YAML) collected into ``overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help=f"{example} (repeatable; values are parsed as YAML)")


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress bars (log lines are still written)")
    parser.add_argument("--verbose", action="store_true", help="debug-level logging")


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line (``protoexplain train: error: ...``, exit status 2), like
    every other error of the command line; ``--help`` shows the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see "
                     f"'{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="protoexplain", description=DESCRIPTION,
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
    _add_set_option(train, "override a config value, e.g. --set training.epochs=5")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from RUN_DIR/checkpoint.pt (with the "
                            "same config and --set values)")
    train.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    _add_progress(train)

    evaluate = commands.add_parser(
        "evaluate", help="recompute the test metrics of a run directory",
        description="Evaluate the selected model of RUN_DIR on the test split and update "
                    "RUN_DIR/metrics.json.")
    evaluate.add_argument("run_dir", type=Path)
    _add_run_options(evaluate)

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
    _add_run_options(benchmark)

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
    _add_run_options(explain)

    report = commands.add_parser(
        "report", help="write the offline HTML report of a run (global and local views)",
        description="Write a static site, RUN_DIR/report/index.html by default, that opens "
                    "offline: the model overview and benchmark, a page per class with each "
                    "prototype (source, localizations, nearest training patches, weights, "
                    "flags), and local explanations of chosen test images. The numbers also "
                    "go to data.json.")
    report.add_argument("run_dir", type=Path)
    report.add_argument("--out", type=Path, help="the site's folder (default: RUN_DIR/report; "
                                                 "an earlier report there is replaced)")
    report.add_argument("--methods", help="comma-separated localization methods (default: "
                                          "upsample and the run's push method)")
    report.add_argument("--test-images", type=int, default=None, metavar="N",
                        help="test images with a local explanation (default 24; 0: none)")
    _add_run_options(report)

    imported = commands.add_parser(
        "import-protopnet", help="a model saved by the original ProtoPNet code, as a run",
        description="Read CHECKPOINT (torch.save of the original's model.PPNet, or its "
                    "state_dict()) without the original's code and without running anything "
                    "the file names, convert it to our ProtoPNet (same logits and distances; "
                    "the ImageNet normalisation moves into the model) and write RUN_DIR. "
                    "With --push-set, each prototype's nearest training patch is recorded "
                    "(projection.json); the prototypes themselves stay as saved unless "
                    "--project.")
    imported.add_argument("checkpoint", type=Path)
    imported.add_argument("--out", type=Path, required=True, help="the new run directory")
    imported.add_argument("--arch", help="backbone name (default: read from the checkpoint)")
    imported.add_argument("--image-size", type=positive_int,
                          help="image side (default: the checkpoint's img_size, else 224)")
    imported.add_argument("--activation", choices=["log", "linear"],
                          help="for a state dict, which does not say (default log)")
    imported.add_argument("--push-set", type=Path, metavar="DIR",
                          help="image folder (class folders) of the training images: the "
                               "run's data set, searched for each prototype's patch")
    imported.add_argument("--push", action="store_true",
                          help="search the train split of the data set given with --set "
                               "data.* instead")
    imported.add_argument("--project", action="store_true",
                          help="replace the prototypes by the patches found (a checkpoint "
                               "saved before its push)")
    imported.add_argument("--boxes", type=Path, metavar="FILE",
                          help="the original push's bb-receptive_field<epoch>.npy (or "
                               "bb<epoch>.npy): take each prototype's source image from it")
    _add_set_option(imported, "a config value of the run, e.g. --set data.dataset=CUB200")
    _add_progress(imported)

    prune = commands.add_parser(
        "prune", help="remove prototypes whose nearest training patches are of other classes",
        description="The original ProtoPNet's pruning: remove a prototype when fewer than "
                    "THRESHOLD of its K nearest training patches come from its class, then "
                    "fine-tune the last layer. Writes a new run (default RUN_DIR-pruned) with "
                    "pruning.json and test accuracy before and after in metrics.json.")
    prune.add_argument("run_dir", type=Path)
    prune.add_argument("--out", type=Path, help="the pruned run (default: RUN_DIR-pruned)")
    prune.add_argument("--k", type=positive_int, default=6, help="nearest patches (default 6)")
    prune.add_argument("--threshold", type=int, default=3,
                       help="own-class patches needed to stay (default 3)")
    prune.add_argument("--epochs", type=int, default=None,
                       help="last-layer epochs (default: the run's training.last_layer_epochs; "
                            "the original runs 100)")
    _add_run_options(prune)

    masker = commands.add_parser(
        "train-masker", help="train the run's amortized mask predictor (method 'amortized')",
        description="Train, once per model, a light decoder over the frozen trunk that "
                    "predicts the learned mask of any (image, prototype) pair in one pass, with "
                    "the learned masks' objective (keep the prototype's similarity, lose it "
                    "when the region is removed, small and smooth masks; Dabkowski & Gal 2017), "
                    "on the run's training images. Writes RUN_DIR/masker.pt, which "
                    "'protoexplain benchmark RUN_DIR --methods amortized' uses. Settings: "
                    "predictor.conditioning (similarity, vector, both), predictor.levels, "
                    "predictor.channels; training.steps, images_per_step, "
                    "prototypes_per_image, lr, baseline, score, area_weight, deletion_weight, "
                    "tv_weight, supervision_pairs (HDM maps as extra supervision), "
                    "rare_classes, rare_share, seed, checkpoint_every (docs/amortized-masks.md).")
    masker.add_argument("run_dir", type=Path)
    _add_set_option(masker, "a setting, e.g. --set training.steps=300 or "
                            "--set predictor.conditioning=vector")
    masker.add_argument("--resume", action="store_true",
                        help="continue RUN_DIR/masker.pt from its last save (with its settings; "
                             "--set training.steps=N trains a finished one longer)")
    masker.add_argument("--overwrite", action="store_true",
                        help="replace an existing RUN_DIR/masker.pt")
    _add_run_options(masker)

    analysis = commands.add_parser(
        "global-analysis", help="each prototype's k nearest training and test patches",
        description="Find each prototype's K nearest patches (one per image) in the training "
                    "and test sets, localize the prototype in each, and write "
                    "RUN_DIR/global_analysis.json (the report shows it when present).")
    analysis.add_argument("run_dir", type=Path)
    analysis.add_argument("--k", type=positive_int, default=5, help="neighbours (default 5)")
    analysis.add_argument("--method", help="localization method (default: the run's "
                                           "localization.push_method)")
    _add_run_options(analysis)

    demo = commands.add_parser(
        "demo", help="the main job on the embedded SyntheticParts data set (CPU, minutes)",
        description=f"Train and evaluate with the shipped config {DEMO_CONFIG}.yaml and write "
                    "a run directory.")
    demo.add_argument("--out", type=Path,
                      help="run directory (default: runs/demo, or runs/demo-N when taken)")
    _add_set_option(demo, "override a config value, e.g. --set training.epochs=5")
    demo.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    _add_progress(demo)

    _add_study_commands(commands)

    preview = commands.add_parser(
        "show-data", help="write a PNG contact sheet of a config's data set",
        description="Draw samples of the configured data set with their ground-truth parts, "
                    "keypoints and boxes, so a person can see the task.")
    preview.add_argument("config", nargs="?", default=DEMO_CONFIG,
                         help="YAML config file or shipped config name (default: the demo's)")
    preview.add_argument("--split", default="train", choices=["train", "val", "test"])
    preview.add_argument("--count", type=positive_int, default=16, help="number of samples")
    preview.add_argument("--out", type=png_file, default=Path("runs/contact_sheet.png"),
                         help="the PNG file to write (default runs/contact_sheet.png)")
    _add_set_option(preview, "override a config value, e.g. --set data.root=my_images")
    return parser


def _add_study_commands(commands: argparse._SubParsersAction) -> None:
    """``study design`` and ``study analyze``: case-based-reasoning user studies."""
    study = commands.add_parser(
        "study", help="user studies: blinded study material from a run, and its analysis",
        description="Case-based-reasoning user studies (HIVE's distinction and agreement "
                    "tasks, a similarity task): 'study design' writes counterbalanced, blinded "
                    "study pages from a run; 'study analyze' checks and summarises the "
                    "participants' response files. See docs/user-studies.md.")
    actions = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    design = actions.add_parser(
        "design", help="write the study material of a run",
        description="Choose test images (strata of model confidence; correct and incorrect "
                    "predictions balanced for the agreement task), render each trial under "
                    "each condition (no explanation, random boxes, localization methods), "
                    "counterbalance them over participant lists with a Latin square, and "
                    "write STUDY_DIR: lists/list-N/index.html (a self-contained page that "
                    "runs offline), trials.json, trials.csv and stimuli/*.png per list, and "
                    "key.json/key.csv (conditions and the model's answers, for the analysis "
                    "only).")
    design.add_argument("run_dir", type=Path)
    design.add_argument("--config", default=None, metavar="STUDY.yaml",
                        help="a study design file, or the name of a shipped one (default "
                             "cbr_default; see configs/studies/)")
    design.add_argument("--out", type=Path, required=True,
                        help="the study folder to write (must not exist or be empty)")
    _add_run_options(design)
    analyze = actions.add_parser(
        "analyze", help="check and summarise participants' response files",
        description="Check every response file against STUDY_DIR/key.json (unknown trial "
                    "ids, duplicates, another study or list: an error naming the file; "
                    "incomplete files and failed attention checks: excluded and reported), "
                    "then report per condition the accuracy with bootstrap 95 % intervals, "
                    "the differences between conditions with intervals and permutation "
                    "tests, reaction times and a summary per participant. Writes "
                    "summary.md, summary.html, summary.json and responses.csv.")
    analyze.add_argument("study_dir", type=Path)
    analyze.add_argument("responses", nargs="+", type=Path, metavar="RESPONSES",
                         help="response files the study page exported (.json or .csv)")
    analyze.add_argument("--out", type=Path,
                         help="default: STUDY_DIR/analysis (an earlier analysis is replaced)")
    analyze.add_argument("--rounds", type=positive_int, default=10_000,
                         help="bootstrap draws and permutations (default 10000)")
    analyze.add_argument("--seed", type=int, default=0, help="seed of both (default 0)")


def _study(args: argparse.Namespace, progress: bool) -> int:
    """``study design`` and ``study analyze``."""
    if args.study_command == "design":
        from protoexplain.run_dir import load_run
        from protoexplain.study import design_study, load_study_config

        config = load_study_config(args.config)
        run = load_run(args.run_dir, args.device)
        if args.out.resolve().is_relative_to(args.run_dir.resolve()):  # writes into the run
            with run_lock(args.run_dir, "protoexplain study design"):
                summary = design_study(run, config, args.out, progress=progress)
        else:
            summary = design_study(run, config, args.out, progress=progress)
        print(f"study {summary.study_id}: {summary.lists} lists of {summary.trials_per_list} "
              f"trials -> {summary.path}/lists/*/index.html (key: {summary.path}/key.json)")
        return 0
    from protoexplain.study import analyze_study

    out = args.out or args.study_dir / "analysis"
    summary = analyze_study(args.study_dir, args.responses, out, rounds=args.rounds,
                            seed=args.seed)
    print(f"{summary['included']} of {summary['files']} participants included -> "
          f"{out}/summary.md")
    return 0


def _train(config_path: str, overrides: list[str], out: Path | None, resume: bool,
           progress: bool, verbose: bool, overwrite: bool = False) -> int:
    """``train`` and ``demo``: check the config, lock the run directory, refuse one that
    holds a run (unless ``overwrite``) or, with ``resume``, one with nothing to resume; then
    train and report. Ctrl-C ends with one line saying what is kept and how to resume."""
    from protoexplain.factory import resolve_device
    from protoexplain.pipeline import train_and_report
    from protoexplain.run_start import check_resumable, prepare_new_run

    if resume and overwrite:
        raise ConfigError("--resume continues the run a directory holds and --overwrite "
                          "replaces it: pass one of them")
    config = load_config(config_path, overrides)
    run_dir = out or _default_run_dir(config_path)
    if resume:
        check_resumable(run_dir)  # before the lock creates a mistyped directory
    command = ["protoexplain", "train", config_path, "--out", str(run_dir),
               *(item for value in overrides for item in ("--set", value))]
    resolve_device(config.device)  # under torchrun: joins the process group
    with _locked(run_dir, f"protoexplain train {config_path}"):
        if not resume:
            distributed.on_main(lambda: prepare_new_run(run_dir, overwrite=overwrite))
        _setup_logging(run_dir, verbose)
        try:
            train_and_report(config, run_dir, resume=resume, progress=progress)
        except KeyboardInterrupt as interrupt:
            kept, resumable = _kept(run_dir, interrupt)
            again = [*command, "--resume" if resumable else "--overwrite"]
            print(f"protoexplain: interrupted: {kept}; "
                  f"{'resume' if resumable else 'start again'} with: "
                  f"{' '.join(shlex.quote(part) for part in again)}", file=sys.stderr)
            return INTERRUPTED
    return 0


def _kept(run_dir: Path, interrupt: KeyboardInterrupt) -> tuple[str, bool]:
    """What an interrupted ``train`` leaves in ``run_dir``, in words, and whether there is a
    checkpoint to resume."""
    from protoexplain.training_run import TrainingInterrupted

    if isinstance(interrupt, TrainingInterrupted) and interrupt.completed > 0:
        return (f"{interrupt.checkpoint} keeps the last completed stage ({interrupt.completed} "
                f"of {interrupt.total})"), True
    if (run_dir / "checkpoint.pt").is_file():
        return f"{run_dir / 'checkpoint.pt'} keeps the last completed stage", True
    return f"no stage had completed, so {run_dir} holds no checkpoint to resume", False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = not getattr(args, "no_progress", False) and distributed.launch_rank() == 0
    verbose = getattr(args, "verbose", False)
    try:
        _setup_logging(None, verbose)  # before tune_malloc, so that -v shows what it set;
        tune_malloc()                  # `train` and `demo` add their run's train.log
        if distributed.launch_world_size() > 1 and args.command not in DISTRIBUTED_COMMANDS:
            raise distributed.DistributedError(
                f"'protoexplain {args.command}' runs on one process; of the commands only "
                f"{', '.join(DISTRIBUTED_COMMANDS)} run under torchrun with several")
        if args.command == "train":
            return _train(args.config, args.overrides, args.out, args.resume, progress, verbose,
                          args.overwrite)
        if args.command == "demo":
            out = args.out or _first_free(Path("runs/demo"))
            return _train(DEMO_CONFIG, args.overrides, out, False, progress, verbose,
                          args.overwrite)
        if args.command == "evaluate":
            from protoexplain.evaluation import headline
            from protoexplain.pipeline import evaluate_run
            from protoexplain.run_dir import load_run

            run = load_run(args.run_dir, args.device)
            with run_lock(args.run_dir, "protoexplain evaluate"):
                metrics = evaluate_run(run, progress=progress)
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
            with _locked(args.run_dir, "protoexplain benchmark"):
                results = benchmark_run(run, methods, images_per_prototype=count,
                                        progress=progress)
            if distributed.is_main_process():
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
            if out.resolve().is_relative_to(args.run_dir.resolve()):  # writes into the run
                with run_lock(args.run_dir, "protoexplain explain"):
                    results = explain_images(run, args.images, out, top_k=args.top,
                                             methods=methods)
            else:
                results = explain_images(run, args.images, out, top_k=args.top, methods=methods)
            for result in results:
                print(f"{result['image']}: {result['predicted_class']} "
                      f"({result['probability']:.2f}) -> {result['picture']}")
            return 0
        if args.command == "report":
            from protoexplain.config import check_localization_methods
            from protoexplain.report import DEFAULT_TEST_IMAGES, write_report
            from protoexplain.run_dir import load_run

            run = load_run(args.run_dir, args.device)
            methods = args.methods.split(",") if args.methods else None
            if methods:
                run.config.localization.evaluation_methods = methods
                check_localization_methods(run.config, "--methods")
            count = DEFAULT_TEST_IMAGES if args.test_images is None else args.test_images
            if count < 0:
                raise ConfigError(f"--test-images must be 0 or more, got {count}")
            out = args.out or args.run_dir / "report"
            with ExitStack() as stack:
                if out.resolve().is_relative_to(args.run_dir.resolve()):  # writes into the run
                    stack.enter_context(_locked(args.run_dir, "protoexplain report"))
                summary = write_report(run, out, methods=methods, test_images=count,
                                       progress=progress)
            if distributed.is_main_process():
                print(f"wrote {summary.path} ({summary.files} files, "
                      f"{summary.bytes / 2**20:.1f} MiB)")
            return 0
        if args.command == "import-protopnet":
            from protoexplain.import_protopnet import import_protopnet

            info = import_protopnet(args.checkpoint, args.out, arch=args.arch,
                                    image_size=args.image_size, activation=args.activation,
                                    push_set=args.push_set, push_now=args.push,
                                    project=args.project, boxes=args.boxes,
                                    overrides=args.overrides,
                                    progress=progress)
            print(f"imported {info['backbone']} ProtoPNet ({info['num_prototypes']} prototypes, "
                  f"{'projected' if info['projected'] else 'unprojected'}) -> {args.out}")
            return 0
        if args.command == "prune":
            from protoexplain.prune import prune_run

            metrics = prune_run(args.run_dir, args.out, k=args.k, threshold=args.threshold,
                                epochs=args.epochs, device=args.device, progress=progress)
            print(f"{metrics['num_prototypes_before_pruning']} -> {metrics['num_prototypes']} "
                  f"prototypes; test accuracy {metrics['test_accuracy_before_pruning']:.4f} "
                  f"before, {metrics['test_accuracy']:.4f} after pruning and fine-tuning")
            return 0
        if args.command == "train-masker":
            from protoexplain.run_dir import load_run
            from protoexplain.train_masker import MASKER_NAME, train_masker

            run = load_run(args.run_dir, args.device)
            record = train_masker(run, args.overrides, resume=args.resume,
                                  overwrite=args.overwrite, progress=progress)
            print(f"trained the mask predictor in {record['seconds']:.0f} s "
                  f"({record['forward_images'] + record['backward_images']} model passes) -> "
                  f"{args.run_dir / MASKER_NAME}")
            return 0
        if args.command == "global-analysis":
            from protoexplain.config import check_localization_methods
            from protoexplain.global_analysis import GLOBAL_ANALYSIS, global_analysis
            from protoexplain.run_dir import load_run

            run = load_run(args.run_dir, args.device)
            if args.method:
                run.config.localization.evaluation_methods = [args.method]
                check_localization_methods(run.config, "--method")
            global_analysis(run, k=args.k, method=args.method, progress=progress)
            print(f"wrote {args.run_dir / GLOBAL_ANALYSIS}")
            return 0
        if args.command == "study":
            return _study(args, progress)
        if args.command == "show-data":
            from protoexplain.data.contact_sheet import write_contact_sheet
            from protoexplain.factory import build_dataset

            config = load_config(args.config, args.overrides)
            dataset = build_dataset(config, args.split, augment=False)
            if len(dataset) == 0:
                raise ConfigError(f"the {args.split} split of data set {config.data.dataset} "
                                  "is empty: there is nothing to show")
            try:
                path = write_contact_sheet(dataset, args.out, count=args.count)
            except OSError as error:
                reason = error.strerror or str(error)
                raise ConfigError(f"--out {args.out} cannot be written: {reason}"
                                  + (f" ({error.filename})" if error.filename else "")) from None
            print(f"wrote {path}")
            return 0
    except (ConfigError, CheckpointError, RunDirError, OSError,
            distributed.DistributedError) as error:
        print(f"protoexplain: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("protoexplain: interrupted", file=sys.stderr)
        return INTERRUPTED
    except RuntimeError as error:
        from protoexplain.training_run import TrainingStopped

        if isinstance(error, TrainingStopped):
            logging.getLogger("protoexplain").error("%s", error)
            return 1
        raise
    finally:
        distributed.leave()
    return 1


if __name__ == "__main__":
    sys.exit(main())
