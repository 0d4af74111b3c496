"""Checkpoints are written atomically and checked on load."""

import os

import pytest
import torch

from protoexplain.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_keeps_tensors_and_plain_values(tmp_path):
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "config": {"seed": 1},
             "history": [{"loss": 0.5}]}
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    loaded = load_checkpoint(tmp_path)
    assert loaded["format_version"] == FORMAT_VERSION
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["config"] == {"seed": 1}
    assert loaded["history"] == [{"loss": 0.5}]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot save this")

    with pytest.raises(RuntimeError, match="cannot save this"):
        save_checkpoint(path, {"step": 2, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_missing_corrupt_and_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt is not a checkpoint protoexplain can "
                                              "read"):
        load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(CheckpointError, match="is not a protoexplain checkpoint .it has no "
                                              "format_version"):
        load_checkpoint(foreign)
    save_checkpoint(foreign, {"weights": torch.zeros(1)})
    torch.save({"format_version": 7}, foreign)
    with pytest.raises(CheckpointError, match="format version 7"):
        load_checkpoint(foreign)
