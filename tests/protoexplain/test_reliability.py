"""Nothing lost, nothing silent: every bad input is one ``protoexplain: error:`` line with exit
status 2 naming the key, file or option; a run directory is locked while a command writes
it, never overwritten unless asked, resumed only from its checkpoint and its own config, and
an interruption says what is kept and how to resume."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from protoexplain.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from protoexplain.cli import main
from protoexplain.run_lock import LOCK_NAME, RunLockError, run_lock
from protoexplain.run_start import prepare_new_run
from tests.protoexplain.tiny_runs import (
    PUSHED_RUN,
    interrupt_training_after,
    pushed_run,
    tiny_run,
    write_run_dir,
)

ROOT = Path(__file__).resolve().parents[2]

TINY = [
    *tiny_run(epochs=3, push_every=2, prototypes_per_class=1),
    "data.options={image_size: 32, num_classes: 2, num_samples: 8, clutter: 0}",
    "training.pretrain_epochs=0",
    "localization.push_method=upsample",
    "localization.evaluation_methods=[upsample]",
    "localization.images_per_prototype=1",
]
"""A run of seconds: 3 epochs (a push at epoch 2), 2 classes of 8 images of 32 px."""


def _sets(*values: str) -> list[str]:
    return [item for value in values for item in ("--set", value)]


def _train_args(out: Path, *extra: str, config: str = "synthetic_protopnet") -> list[str]:
    return ["train", config, "--out", str(out), "--no-progress", *_sets(*TINY, *extra)]


def _one_error_line(capsys) -> str:
    """The whole of stderr, checked to be one ``protoexplain...: error:`` line."""
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("protoexplain") and ": error: " in err, err
    assert "Traceback" not in err
    return err


# --- bad config values: one line, exit 2, naming the key and the allowed values -----------

BAD_VALUES = [
    ("training.epochs=0", "'training.epochs'", "must be >= 1, got 0"),
    ("training.epochs=ten", "'training.epochs'", "expected an integer, got 'ten'"),
    ("training.warm_epochs=-1", "'training.warm_epochs'", "must be >= 0"),
    ("training.push_every=0", "'training.push_every'", "must be >= 1"),
    ("training.last_layer_epochs=-2", "'training.last_layer_epochs'", "must be >= 0"),
    ("training.pretrain_epochs=-1", "'training.pretrain_epochs'", "must be >= 0"),
    ("training.pretrain_lr=-0.1", "'training.pretrain_lr'", "must be >= 0"),
    ("training.learning_rates.joint_features=-1e-3",
     "'training.learning_rates.joint_features'", "must be >= 0, got -0.001"),
    ("training.learning_rates.last_layer=-1", "'training.learning_rates.last_layer'",
     "must be >= 0"),
    ("training.learning_rates.joint_gamma=0", "'training.learning_rates.joint_gamma'",
     "must be > 0"),
    ("training.learning_rates.joint_step_size=0", "'training.learning_rates.joint_step_size'",
     "must be >= 1"),
    ("training.push_start=50", "'training.push_start'", "the schedule never pushes"),
    ("data.batch_size=0", "'data.batch_size'", "must be >= 1, got 0"),
    ("data.eval_batch_size=-4", "'data.eval_batch_size'", "must be >= 1"),
    ("data.num_workers=-1", "'data.num_workers'", "must be >= 0, got -1"),
    ("model.prototypes_per_class=0", "'model.prototypes_per_class'", "must be >= 1"),
    ("model.prototype_dim=0", "'model.prototype_dim'", "must be >= 1"),
    ("model.backbone=resnet9", "'model.backbone'", "must be one of resnet18, resnet34"),
    ("model.add_on=wide", "'model.add_on'", "'wide' is not one of 'regular', 'bottleneck'"),
    ("model.mean=[0.5, 0.5]", "'model.mean'", "needs 3 values, got [0.5, 0.5]"),
    ("model.std=[0.25, 0.25, 0]", "'model.std[2]'", "must be > 0, got 0.0"),
    ("model.std=[0.25, 0.25", "override 'model.std=[0.25, 0.25'", "is not valid YAML"),
    ("model.backbone_options={width: 4, width: 8}", "override 'model.backbone_options",
     "key 'width' is given twice"),
    ("device=tpu", "'device'", "must be auto, cpu, cuda, cuda:N"),
    ("device=cuda:x", "'device'", "must be auto, cpu, cuda, cuda:N"),
    ("localization.images_per_prototype=0", "'localization.images_per_prototype'",
     "must be >= 1"),
    ("localization.push_method=nosuch", "'localization.push_method'",
     "unknown localization method 'nosuch'"),
]


@pytest.mark.parametrize("value, key, allowed", BAD_VALUES,
                         ids=[value for value, _, _ in BAD_VALUES])
def test_a_bad_config_value_is_one_line_naming_the_key_with_exit_status_2(
        value, key, allowed, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(out, value)) == 2
    error = _one_error_line(capsys)
    assert key in error and allowed in error, error
    assert not out.exists()  # refused before anything is written


def test_images_too_small_for_the_trunk_name_the_smallest_size(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_train_args(out, "model.backbone_options={width: 4, pools: 6}")) == 2
    error = _one_error_line(capsys)
    assert "'model.backbone' 'small_cnn' needs images of at least 64 px" in error
    assert "gives 32 px (data.options.image_size)" in error
    assert not (out / "config.yaml").exists()


# --- config files that must not be accepted silently ----------------------------------------

@pytest.mark.parametrize("text, message", [
    ("", "is empty: it would train the defaults"),
    ("# only a comment\n", "is empty: it would train the defaults"),
    ("{}\n", "is empty: it would train the defaults"),
    ("training:\n  epochs: 3\n  epochs: 30\n",
     "key 'epochs' is given twice (lines 2 and 3)"),
    ("model:\n  backbone: small_cnn\nmodel:\n  prototype_dim: 8\n",
     "key 'model' is given twice (lines 1 and 3)"),
    ("training: [1, 2\n", "is not valid YAML: line 2, column 1"),
])
def test_empty_duplicate_and_malformed_config_files_are_refused_naming_the_file(
        text, message, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    error = _one_error_line(capsys)
    assert message in error and str(config) in error, error


def test_a_config_file_that_is_not_text_is_refused(tmp_path, capsys):
    config = tmp_path / "model.yaml"
    torch.save({"weights": torch.zeros(3)}, config)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    assert f"config file {config} is not a text file" in _one_error_line(capsys)


# --- the run directory: a lock, no overwriting, nothing silent on resume --------------------

HOLDER = """
import sys
from protoexplain.run_lock import run_lock
with run_lock(sys.argv[1], "the holder"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_process_is_refused_with_the_holder_named(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = json.loads((run / LOCK_NAME).read_text())
        assert (lock["pid"], lock["host"]) == (holder.pid, socket.gethostname())
        assert main(_train_args(run)) == 2
        error = _one_error_line(capsys)
        assert f"{run} is in use by process {holder.pid} on {socket.gethostname()}" in error
        assert "(the holder)" in error
        assert sorted(p.name for p in run.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        holder.communicate("")
    assert holder.returncode == 0 and not (run / LOCK_NAME).exists()  # released at exit


SECOND = """
import sys, time
from pathlib import Path
import protoexplain.pipeline  # the slow imports, before the race
from protoexplain.cli import main
lock = Path(sys.argv[1]) / "run.lock"
print("ready", flush=True)
while not lock.exists():
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_trainings_into_one_folder_one_runs_and_the_other_is_refused(tmp_path):
    run = tmp_path / "run"
    args = _train_args(run)
    # the second command starts as soon as the first has locked the folder
    second = subprocess.Popen([sys.executable, "-c", SECOND, str(run), *args], cwd=tmp_path,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert second.stdout.readline().strip() == "ready"
    first = subprocess.Popen([sys.executable, "-m", "protoexplain", *args], cwd=tmp_path,
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, second_err = second.communicate(timeout=300)
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2
    assert second_err.count("\n") == 1
    assert f"{run} is in use by process {first.pid}" in second_err
    log = (run / "train.log").read_text()
    assert log.count("stage   1/") == 1  # one run's lines only
    assert not (run / LOCK_NAME).exists()


def _dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    return int(finished.stdout)


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_log_line(tmp_path, capsys):
    run = write_run_dir(pushed_run(tmp_path / "run"))
    stale = {"pid": _dead_pid(), "host": socket.gethostname(), "started": "earlier",
             "command": "protoexplain train"}
    (run / LOCK_NAME).write_text(json.dumps(stale))
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"taking over the stale lock of process {stale['pid']}" in err
    assert not (run / LOCK_NAME).exists()


def test_a_lock_whose_process_id_was_reused_is_stale_and_one_of_another_host_is_not(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    reused = {"pid": os.getpid(), "host": socket.gethostname(), "started": "earlier",
              "process_start": "-1"}  # this process's id, but not its start time
    (run / LOCK_NAME).write_text(json.dumps(reused))
    with run_lock(run):
        assert json.loads((run / LOCK_NAME).read_text())["process_start"] != "-1"
    remote = {"pid": 1, "host": "elsewhere.example", "started": "earlier"}
    (run / LOCK_NAME).write_text(json.dumps(remote))
    with pytest.raises(RunLockError, match=f"elsewhere.example.*remove {run / LOCK_NAME}"):
        with run_lock(run):
            pass
    assert json.loads((run / LOCK_NAME).read_text()) == remote


def test_the_lock_is_released_on_errors_and_may_be_taken_again_by_its_holder(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        with run_lock(run):
            with run_lock(run):  # nested: the same process may take it again
                assert (run / LOCK_NAME).exists()
            assert (run / LOCK_NAME).exists()
            raise KeyboardInterrupt
    assert not (run / LOCK_NAME).exists()


def test_a_directory_holding_run_files_is_refused_unless_overwrite_is_given(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "prototypes").mkdir(parents=True)
    for name in ("metrics.json", "config.yaml", "notes.txt"):  # no checkpoint.pt
        (run / name).write_text("{}")
    assert main(_train_args(run)) == 2
    error = _one_error_line(capsys)
    assert f"{run} already holds a run (config.yaml, metrics.json, prototypes)" in error
    assert "--overwrite to replace it" in error and "--resume" not in error
    assert main([*_train_args(run), "--overwrite", "--resume"]) == 2
    assert "pass one of them" in _one_error_line(capsys)
    prepare_new_run(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]  # only run files go


def test_resume_with_nothing_to_resume_is_an_error(tmp_path, capsys):
    missing = tmp_path / "mistyped"
    assert main([*_train_args(missing), "--resume"]) == 2
    assert f"--resume: {missing} does not exist, so there is nothing to resume" in \
        _one_error_line(capsys)
    assert not missing.exists()
    started = tmp_path / "started"
    started.mkdir()
    (started / "config.yaml").write_text("seed: 0\n")
    assert main([*_train_args(started), "--resume"]) == 2
    error = _one_error_line(capsys)
    assert f"{started} holds no checkpoint.pt, so there is nothing to resume" in error
    assert "(it holds config.yaml)" in error and "with --overwrite" in error


def test_ctrl_c_keeps_the_last_stage_and_names_the_resume_command_which_refuses_changes(
        tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_training_after(patch, calls=2)
        assert main(_train_args(run)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"protoexplain: interrupted: {run / CHECKPOINT_NAME} keeps the last "
                           "completed stage (2 of 5); resume with: protoexplain train ")
    command = shlex.split(last.split("resume with: ", 1)[1])
    assert command == ["protoexplain", *_train_args(run)[:4], *_sets(*TINY), "--resume"]
    assert not (run / LOCK_NAME).exists()

    # a changed model or schedule: refused with every difference
    assert main([*command[1:], *_sets("training.epochs=4", "model.prototype_dim=16")]) == 2
    error = _one_error_line(capsys)
    assert "--resume: the config differs from the one" in error
    assert "model.prototype_dim: 8 in the run, 16 now; training.epochs: 3 in the run, 4 now" \
        in error
    assert ("Only device, data.num_workers, training.cache_frozen_trunk, localization.* may "
            "change on resume") in error

    # a key that may change: accepted, recorded and written to config.yaml
    assert main([*command[1:], *_sets("localization.images_per_prototype=2")]) == 0
    change = {"stage": 2, "key": "localization.images_per_prototype", "old": 1, "new": 2}
    assert json.loads((run / "metrics.json").read_text())["config_changes"] == [change]
    assert load_checkpoint(run)["training_state"]["config_changes"] == [change]
    assert yaml.safe_load((run / "config.yaml").read_text())["localization"][
        "images_per_prototype"] == 2
    assert "resumed with changed settings" in (run / "train.log").read_text()


def test_ctrl_c_before_the_first_stage_says_to_start_again(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        interrupt_training_after(patch, calls=0)
        assert main(_train_args(run)) == 130
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (f"protoexplain: interrupted: no stage had completed, so {run} holds no "
                    "checkpoint to resume; start again with: protoexplain "
                    + shlex.join([*_train_args(run)[:4], *_sets(*TINY), "--overwrite"]))
    assert not (run / LOCK_NAME).exists()


def test_temporary_files_of_interrupted_writes_are_removed_on_the_next_start(tmp_path, capsys):
    run = write_run_dir(pushed_run(tmp_path / "run"))
    (run / "prototypes").mkdir()
    leftovers = [run / ".checkpoint.pt.k2j3_x9a.tmp", run / ".metrics.json.abc123de.tmp",
                 run / "prototypes" / ".p0.png.zz9_1abc.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    (run / "mine").mkdir()
    kept = [run / ".notes.tmp", run / "draft.tmp",  # not names of atomic writes
            run / "mine" / ".data.csv.abcdefgh.tmp"]  # not in a folder commands write
    for path in kept:
        path.write_text("mine")
    assert main(["evaluate", str(run), "--no-progress"]) == 0
    assert not any(path.exists() for path in leftovers)
    assert all(path.exists() for path in kept)
    assert "removed 3 temporary file(s) of interrupted writes" in capsys.readouterr().err


# --- checkpoints that are not ours --------------------------------------------------------

def test_a_checkpoint_that_is_not_ours_is_one_line_without_unsafe_advice(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    torch.save(torch.nn.Linear(2, 2), run / CHECKPOINT_NAME)
    assert main(["evaluate", str(run)]) == 2
    error = _one_error_line(capsys)
    assert "is not a protoexplain checkpoint: it holds pickled Python objects" in error
    assert "weights_only" not in error and "trust" not in error
    (run / CHECKPOINT_NAME).write_bytes(b"\x00" * 64)
    assert main(["evaluate", str(run)]) == 2
    assert "is not a checkpoint protoexplain can read" in _one_error_line(capsys)


def test_a_checkpoint_missing_a_field_or_not_fitting_its_model_is_one_line(tmp_path, capsys):
    run = write_run_dir(pushed_run(tmp_path / "run"))
    payload = load_checkpoint(run)
    del payload["format_version"]
    records = payload.pop("records")
    save_checkpoint(run / CHECKPOINT_NAME, payload)
    assert main(["evaluate", str(run)]) == 2
    assert f"checkpoint {run / CHECKPOINT_NAME} has no 'records'" in _one_error_line(capsys)
    payload["records"] = records
    del payload["model"]["last_layer.weight"]
    save_checkpoint(run / CHECKPOINT_NAME, payload)
    assert main(["evaluate", str(run)]) == 2
    error = _one_error_line(capsys)
    assert "does not fit the model its config describes" in error and "last_layer" in error
    # a finished run written without a training state cannot be resumed
    write_run_dir(pushed_run(tmp_path / "run"))
    assert main(["train", "synthetic_protopnet", "--out", str(run), "--resume",
                 *_sets(*PUSHED_RUN)]) == 2
    assert "has no 'training_state'" in _one_error_line(capsys)


# --- explain and show-data --------------------------------------------------------------

def test_explain_of_two_images_of_the_same_name_writes_two_pictures(tmp_path, capsys):
    run = write_run_dir(pushed_run(tmp_path / "run"))
    images = [tmp_path / "a" / "bird.png", tmp_path / "b" / "bird.png", tmp_path / "bird.jpg"]
    for shade, path in enumerate(images):
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), np.full((20, 30, 3), 60 * shade, np.uint8))
    assert main(["explain", str(run), *map(str, images), "--top", "1", "--no-progress"]) == 0
    pictures = [line.split(" -> ")[1] for line in capsys.readouterr().out.splitlines()]
    assert [Path(p).name for p in pictures] == [
        "bird-1_explanation.png", "bird-2_explanation.png", "bird-3_explanation.png"]
    assert all(Path(p).is_file() for p in pictures)
    saved = json.loads((run / "explanations" / "explanations.json").read_text())
    assert [row["picture"] for row in saved] == pictures


@pytest.mark.parametrize("argv, message", [
    (["explain", "RUN", "x.png", "--top", "0"], "argument --top: expected a positive integer"),
    (["explain", "RUN", "x.png", "--top", "-2"], "argument --top: expected a positive integer"),
    (["show-data", "--count", "0"], "argument --count: expected a positive integer, got '0'"),
    (["show-data", "--out", "sheet.jpg"], "argument --out: expected a file name ending in .png"),
    (["train"], "the following arguments are required: config"),
])
def test_usage_errors_are_one_line_with_exit_status_2(argv, message, tmp_path, capsys):
    argv = [str(tmp_path) if part == "RUN" else part for part in argv]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    error = _one_error_line(capsys)
    assert message in error and "--help" in error


def test_show_data_names_an_output_it_cannot_write(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    assert main(["show-data", "--count", "1", "--out", str(blocker / "sheet.png"),
                 *_sets("data.options={image_size: 32, num_samples: 2}")]) == 2
    assert f"--out {blocker / 'sheet.png'} cannot be written" in _one_error_line(capsys)
    (tmp_path / "sheet.png").mkdir()
    with pytest.raises(SystemExit):
        main(["show-data", "--out", str(tmp_path / "sheet.png")])  # a folder
    assert "is a folder; name a .png file in it" in _one_error_line(capsys)


# --- image folders: one class, empty splits and classes, skipped images ----------------------

def _image_folder(root: Path, classes: dict[str, int]) -> Path:
    for c, (name, count) in enumerate(classes.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = np.full((36, 36, 3), (40 + 100 * c, 200 - 80 * c, 30 * i % 255), np.uint8)
            cv2.imwrite(str(root / name / f"{i}.png"), pixels)
    return root


FOLDER_RUN = ["data.root=ROOT", "data.options={image_size: 32, augment: false, "
              "val_fraction: 0.25, test_fraction: 0.25, on_bad_image: skip, progress: false}",
              "data.num_workers=0", "model.pretrained=null", "localization.push_method=upsample"]


def _folder_args(out: Path, root: Path, *extra: str) -> list[str]:
    sets = [value.replace("ROOT", str(root)) for value in FOLDER_RUN]
    return ["train", "imagefolder_protopnet", "--out", str(out), "--no-progress",
            *_sets(*TINY[:-5], "localization.images_per_prototype=1", *sets, *extra)]


def test_an_image_folder_with_one_class_is_refused(tmp_path, capsys):
    root = _image_folder(tmp_path / "images", {"cat": 8})
    assert main(_folder_args(tmp_path / "run", root)) == 2
    assert "holds one class folder ('cat'): a classifier needs at least two classes" in \
        _one_error_line(capsys)


def test_a_split_or_class_left_empty_is_one_line(tmp_path, capsys):
    root = _image_folder(tmp_path / "images", {"cat": 8, "owl": 8})
    no_val = "data.options={image_size: 32, val_fraction: 0.0, test_fraction: 0.25}"
    assert main(_folder_args(tmp_path / "run", root, no_val)) == 2
    assert "data set ImageFolder: the val split is empty" in _one_error_line(capsys)
    for path in (root / "owl").iterdir():
        path.write_bytes(b"not an image")
    assert main(_folder_args(tmp_path / "run", root)) == 2
    error = _one_error_line(capsys)
    assert "1 class(es) have no images in the train split after on_bad_image: skip left out " \
           "4 unreadable file(s): 'owl'" in error


def test_skipped_images_are_logged_and_recorded_in_metrics(tmp_path):
    root = _image_folder(tmp_path / "images", {"cat": 8, "owl": 8})
    broken = root / "owl" / "7.png"
    broken.write_bytes(b"\x89PNG broken")
    run = tmp_path / "run"
    assert main(_folder_args(run, root)) == 0
    skipped = json.loads((run / "metrics.json").read_text())["skipped_images"]
    files = [entry["file"] for entries in skipped.values() for entry in entries]
    assert files == [str(broken)]
    log = (run / "train.log").read_text()
    assert "on_bad_image: skip left out 1 unreadable image(s) of the" in log
    assert str(broken) in log
