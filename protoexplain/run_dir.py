"""Reading a run directory back: the resolved config, the selected model and its projection."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from protoexplain.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    require_fields,
)
from protoexplain.config import Config, config_from_dict
from protoexplain.factory import build_model, resolve_device, use_deterministic_kernels
from prototypes import ProjectionRecord, ProtoPNet, resize_prototypes

RUN_FIELDS = ("config", "image_size", "model", "records")
"""What a checkpoint holds for :func:`load_run`."""


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
    path = run_dir / CHECKPOINT_NAME
    saved = load_checkpoint(run_dir, map_location="cpu")
    require_fields(saved, path, RUN_FIELDS)
    config = config_from_dict(saved["config"], source=str(path))
    target = resolve_device(device or config.device)
    use_deterministic_kernels(target, config.deterministic)
    payload = load_checkpoint(run_dir, map_location=target)
    identity = payload["model"].get("prototype_class_identity")
    if not isinstance(identity, torch.Tensor) or identity.ndim != 2:
        raise CheckpointError(f"checkpoint {path} has no 'model.prototype_class_identity': it "
                              "was not written by this protoexplain's 'train', or is damaged")
    model = build_model(config, identity.shape[1], payload["image_size"],
                        load_pretrained=False).to(target)
    if identity.shape != model.prototype_class_identity.shape and isinstance(model, ProtoPNet):
        resize_prototypes(model, identity)  # a pruned or imported model's own prototype count
    load_model_state(model, payload["model"], path)
    model.eval()
    records = [ProjectionRecord.from_dict(record) for record in payload["records"]]
    return LoadedRun(path=run_dir, config=config, model=model, records=records, device=target)
