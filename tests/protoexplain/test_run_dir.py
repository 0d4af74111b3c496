"""Reading a run directory back: config, selected model and projection records."""

import pytest
import torch

from protoexplain.checkpoint import CheckpointError
from protoexplain.config_schema import to_dict
from protoexplain.run_dir import load_run
from prototypes import ProtoPNet
from tests.protoexplain.tiny_runs import pushed_run, write_run_dir


def test_a_saved_run_loads_back_as_the_same_model_config_and_records(tmp_path):
    saved = pushed_run(tmp_path / "run")
    write_run_dir(saved)
    run = load_run(tmp_path / "run", device="cpu")
    assert isinstance(run.model, ProtoPNet) and not run.model.training
    for name, tensor in saved.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], tensor), name
    assert to_dict(run.config) == to_dict(saved.config)
    assert [r.to_dict() for r in run.records] == [r.to_dict() for r in saved.records]
    assert run.path == tmp_path / "run" and run.device == torch.device("cpu")
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(run.model(images).logits, saved.model(images).logits)


def test_a_directory_without_checkpoint_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError) as refused:
        load_run(tmp_path)
    assert str(refused.value) == (
        f"{tmp_path} is not a run directory: it has no checkpoint.pt (create one with "
        "'protoexplain train CONFIG --out DIR')")
