"""Config overrides shared by the end-to-end run tests: a tiny CPU model and schedule."""


def tiny_run(*, epochs: int, push_every: int, prototypes_per_class: int) -> list[str]:
    """``--set`` items for a small_cnn of width 4 with 8-dimensional prototypes, batches of
    8 (16 in evaluation), one warm-up and one last-layer epoch, and a push every
    ``push_every`` epochs from epoch ``push_every`` on."""
    return [
        "device=cpu",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "model.backbone=small_cnn",
        "model.backbone_options={width: 4}",
        f"model.prototypes_per_class={prototypes_per_class}",
        "model.prototype_dim=8",
        f"training.epochs={epochs}",
        "training.warm_epochs=1",
        f"training.push_start={push_every}",
        f"training.push_every={push_every}",
        "training.last_layer_epochs=1",
    ]
