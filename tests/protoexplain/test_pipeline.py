"""The run-level pipeline's reading of a config (no model runs)."""

from pathlib import Path

from protoexplain.config import load_config
from protoexplain.pipeline import metric_settings

CONFIGS = Path(__file__).parents[2] / "configs"


def test_metric_settings_keep_the_configs_options_and_take_overrides_over_them():
    # an XProtoNet config's options: its score is the pooled similarity, not the peak's
    config = load_config(CONFIGS / "synthetic_xprotonet.yaml")
    assert config.localization.metric_options["score"] == "pooled"
    settings = metric_settings(config, stability=True, sanity=False, deletion_insertion=False)
    assert settings.score == "pooled"
    assert (settings.stability, settings.sanity, settings.deletion_insertion) == (
        True, False, False)
    assert metric_settings(load_config(None)).score == "peak"  # the default
