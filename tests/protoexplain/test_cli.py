"""The command line: argument parsing, help of every command, and bad input reported as one
``protoexplain: error: ...`` line with exit status 2 (no traceback)."""

import argparse
import re

import cv2
import numpy as np
import pytest

from protoexplain.cli import _first_free, build_parser, image_count, main, positive_int
from tests.protoexplain.tiny_runs import pushed_run, write_run_dir

COMMANDS = {"train", "evaluate", "benchmark", "explain", "demo", "show-data", "report",
            "import-protopnet", "prune", "global-analysis", "study", "train-masker"}


def _commands_action() -> argparse._SubParsersAction:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    return dict(_commands_action().choices)


def _squeezed(text: str) -> str:
    return "".join(text.split())


def _one_error_line(capsys) -> str:
    """The whole of stderr, checked to be one ``protoexplain: error:`` line."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("protoexplain: error: "), err
    assert "Traceback" not in err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run_dir(pushed_run(tmp_path_factory.mktemp("cli") / "run"))


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "bird.png"
    cv2.imwrite(str(path), np.full((20, 30, 3), 128, np.uint8))
    return path


def test_top_level_help_lists_every_command_with_its_summary(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: protoexplain ")
    summaries = {a.dest: a.help for a in _commands_action()._choices_actions}
    assert set(summaries) == COMMANDS
    for name, summary in summaries.items():
        assert re.search(rf"^    {name}\b", out, re.MULTILINE), name
        assert _squeezed(summary) in _squeezed(out), name


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_of_every_command_exits_0_and_shows_its_description(command, capsys):
    description = _subparsers()[command].description
    assert len(description) > 40
    with pytest.raises(SystemExit) as stopped:
        main([command, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: protoexplain {command} ")
    assert _squeezed(description) in _squeezed(out)  # help wraps lines, also at hyphens


def test_a_missing_command_or_argument_is_a_usage_error_with_status_2(capsys):
    for argv in ([], ["explain", "run_dir"], ["train"], ["evaluate", "a", "b"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2, argv
        err = capsys.readouterr().err
        assert "error:" in err and "Traceback" not in err, argv


def test_train_parses_config_out_overrides_and_resume():
    args = build_parser().parse_args(["train", "my.yaml", "--out", "runs/x", "--set", "seed=1",
                                      "--set", "training.epochs=2", "--resume",
                                      "--no-progress"])
    assert (args.command, args.config, str(args.out)) == ("train", "my.yaml", "runs/x")
    assert args.overrides == ["seed=1", "training.epochs=2"]
    assert args.resume and args.no_progress and not args.verbose


def test_image_count_takes_a_positive_integer_or_all():
    assert image_count("all") is None
    assert image_count("12") == 12
    for bad in ("0", "-3", "some", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer or 'all'"):
            image_count(bad)


def test_counts_must_be_positive_integers(capsys):
    assert positive_int("4") == 4
    for bad in ("0", "-1", "x"):
        with pytest.raises(argparse.ArgumentTypeError, match="positive integer"):
            positive_int(bad)
    with pytest.raises(SystemExit) as stopped:
        main(["show-data", "--count", "0"])
    assert stopped.value.code == 2
    assert "argument --count: expected a positive integer, got '0'" in capsys.readouterr().err


def test_a_missing_config_file_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "nowhere.yaml"
    assert main(["train", str(missing), "--out", str(tmp_path / "run")]) == 2
    assert str(missing) in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_unknown_key_or_malformed_override_is_one_error_line_naming_it(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("training:\n  epochs: 1\n")
    out = str(tmp_path / "run")
    assert main(["train", str(config), "--out", out, "--set", "trainig.epochs=1"]) == 2
    err = _one_error_line(capsys)
    assert "unknown config key 'trainig'" in err and "--set trainig.epochs=1" in err
    assert main(["train", str(config), "--out", out, "--set", "noequals"]) == 2
    assert "override 'noequals' must look like key.path=value" in _one_error_line(capsys)
    assert main(["show-data", str(config), "--set", "data.dataset=Nope"]) == 2
    err = _one_error_line(capsys)
    assert "unknown data set 'Nope'; choose one of SyntheticParts" in err


def test_cli_refuses_to_overwrite_a_run_and_names_bad_keys(tmp_path, capsys):
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    config = tmp_path / "run.yaml"
    config.write_text("training:\n  epochs: 1\n  push_start: 0\n")
    assert main(["train", str(config), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "already holds a run (checkpoint.pt); pass --resume" in _one_error_line(capsys)
    config.write_text("trainig:\n  epochs: 1\n")
    assert main(["train", str(config), "--out", str(tmp_path / "new"), "--no-progress"]) == 2
    error = _one_error_line(capsys)
    assert "unknown config key 'trainig'" in error and str(config) in error


@pytest.mark.parametrize("command", [["evaluate"], ["benchmark"], ["explain", "x.png"]])
def test_a_directory_that_is_not_a_run_is_named(command, tmp_path, capsys):
    argv = [command[0], str(tmp_path / "missing"), *command[1:]]
    assert main(argv) == 2
    err = _one_error_line(capsys)
    assert f"{tmp_path / 'missing'} is not a run directory: it has no checkpoint.pt" in err


def test_an_unknown_or_unavailable_device_is_one_error_line(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--device", "tpu"]) == 2
    assert "'device' is 'tpu', which torch does not know" in _one_error_line(capsys)


def test_explain_refuses_unknown_methods_and_unreadable_images_before_writing(
        run_dir, image, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["explain", str(run_dir), str(image), "--methods", "upsample,nosuch",
                 "--out", str(out)]) == 2
    assert "unknown localization method 'nosuch'" in _one_error_line(capsys)
    assert main(["explain", str(run_dir), str(tmp_path / "gone.png"), "--out", str(out)]) == 2
    assert "gone.png" in _one_error_line(capsys)
    assert not out.exists()
    with pytest.raises(SystemExit) as stopped:
        main(["explain", str(run_dir), str(image), "--top", "0"])
    assert stopped.value.code == 2


def test_explain_prints_one_line_per_image_with_class_and_picture(run_dir, image, tmp_path,
                                                                  capsys):
    out = tmp_path / "out"
    assert main(["explain", str(run_dir), str(image), "--top", "1", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1
    assert printed[0].startswith(f"{image}: ")
    assert printed[0].endswith(f"-> {out / 'bird_explanation.png'}")
    assert (out / "bird_explanation.png").is_file() and (out / "explanations.json").is_file()


def test_demo_picks_the_next_free_run_directory(tmp_path):
    assert _first_free(tmp_path / "demo") == tmp_path / "demo"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo-2").mkdir()
    assert _first_free(tmp_path / "demo") == tmp_path / "demo-3"
