"""Reading a run directory back: the resolved config, the selected model and its projection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from protoexplain.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from protoexplain.config import Config, config_from_dict
from protoexplain.factory import build_model, resolve_device, use_deterministic_kernels
from prototypes import ProjectionRecord


@dataclass
class LoadedRun:
    """A finished run, ready for evaluation, benchmarks and explanations."""

    path: Path
    config: Config
    model: torch.nn.Module
    records: list[ProjectionRecord]
    device: torch.device


def load_run(run_dir: str | Path, device: str | None = None) -> LoadedRun:
    """Load ``run_dir``'s checkpoint into a model in eval mode on ``device``."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"{run_dir} is not a run directory: it has no {CHECKPOINT_NAME} "
                              "(create one with 'protoexplain train CONFIG --out DIR')")
    config = config_from_dict(load_checkpoint(run_dir, map_location="cpu")["config"],
                              source=str(run_dir / CHECKPOINT_NAME))
    target = resolve_device(device or config.device)
    use_deterministic_kernels(target, config.deterministic)
    payload = load_checkpoint(run_dir, map_location=target)
    num_classes = payload["model"]["prototype_class_identity"].shape[1]
    model = build_model(config, num_classes, payload["image_size"],
                        load_pretrained=False).to(target)
    model.load_state_dict(payload["model"])
    model.eval()
    records = [ProjectionRecord.from_dict(record) for record in payload["records"]]
    return LoadedRun(path=run_dir, config=config, model=model, records=records, device=target)
