"""The config loader: defaults, overrides and errors that name the key and the file."""

import pytest

from protoexplain.config import Config, ConfigError, load_config, parse_override, save_config


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_follow_the_original_protopnet_settings():
    config = Config()
    assert config.training.loss.cluster == 0.8
    assert config.training.loss.separation == -0.08
    assert config.training.loss.l1 == 1e-4
    assert config.training.loss.alignment == 0.0  # Huang et al.'s term is off, as the original
    assert config.training.learning_rates.joint_features == 1e-4
    assert config.training.learning_rates.joint_prototypes == 3e-3
    assert config.training.learning_rates.last_layer == 1e-4
    assert (config.training.warm_epochs, config.training.push_start) == (5, 10)
    assert config.model.incorrect_class_connection == -0.5


def test_file_values_override_defaults_and_keep_the_rest(tmp_path):
    path = write(tmp_path, "seed: 3\ntraining:\n  epochs: 12\n  loss: {cluster: 0.5}\n")
    config = load_config(path)
    assert config.seed == 3
    assert config.training.epochs == 12
    assert config.training.loss.cluster == 0.5
    assert config.training.loss.separation == -0.08


def test_unknown_key_names_the_dotted_key_and_the_file(tmp_path):
    path = write(tmp_path, "training:\n  loss:\n    clustr: 0.5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "training.loss.clustr" in message
    assert str(path) in message
    assert "did you mean 'cluster'" in message


def test_a_section_that_rejects_its_values_names_the_section_and_the_file(tmp_path):
    path = write(tmp_path, "training:\n  loss: {alignment: -0.3}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "'training.loss'" in message and str(path) in message
    assert "alignment must be >= 0" in message
    assert load_config(path, ["training.loss.alignment=0.3"]).training.loss.alignment == 0.3


def test_wrong_type_is_an_error_naming_the_key(tmp_path):
    path = write(tmp_path, "training:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match="'training.epochs'.*expected an integer"):
        load_config(path)


def test_literal_choices_are_checked(tmp_path):
    path = write(tmp_path, "model:\n  add_on: fancy\n")
    with pytest.raises(ConfigError, match="'model.add_on'.*'regular', 'bottleneck'"):
        load_config(path)


def test_set_overrides_parse_yaml_values_and_reject_unknown_keys(tmp_path):
    path = write(tmp_path, "training:\n  epochs: 12\n")
    config = load_config(path, ["training.epochs=3", "training.push_start=0",
                                "model.backbone=resnet18",
                                "localization.evaluation_methods=[upsample, hdm]"])
    assert config.training.epochs == 3
    assert config.model.backbone == "resnet18"
    assert config.localization.evaluation_methods == ["upsample", "hdm"]
    with pytest.raises(ConfigError, match="training.epoch'"):
        load_config(path, ["training.epoch=3"])


def test_override_without_equals_sign_is_rejected():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("training.epochs")


def test_data_set_options_are_checked_against_the_constructor(tmp_path):
    path = write(tmp_path, "data:\n  dataset: SyntheticParts\n  options: {imag_size: 32}\n")
    with pytest.raises(ConfigError, match="data.options.imag_size"):
        load_config(path)
    path = write(tmp_path, "data:\n  dataset: NoSuchSet\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"'data.dataset' in {path}: unknown data set 'NoSuchSet'; choose one of "
        "SyntheticParts, SyntheticRadiographs, FashionComposites, CUB200, ChestXray14, "
        "ImageFolder")


def test_missing_or_malformed_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.yaml")
    path = write(tmp_path, "training: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_saved_config_loads_back_identically(tmp_path):
    config = load_config(None, ["training.epochs=7", "training.push_start=0",
                                "model.prototype_dim=32"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


XPROTONET = "model:\n  architecture: xprotonet\ndata:\n  dataset: SyntheticRadiographs\n"


def test_xprotonet_loss_takes_its_own_coefficients_and_defaults(tmp_path):
    path = write(tmp_path, XPROTONET + "training:\n  loss: {transformation: 0.1}\n")
    loss = load_config(path).training.loss
    assert loss.transformation == 0.1
    assert (loss.binary_cross_entropy, loss.cluster, loss.separation) == (1.0, 0.8, 0.08)


def test_loss_keys_of_the_other_architecture_are_errors_naming_key_and_architecture(tmp_path):
    path = write(tmp_path, XPROTONET + "training:\n  loss: {cross_entropy: 1.0}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "training.loss.cross_entropy" in message and str(path) in message
    assert "model.architecture 'xprotonet'" in message and "binary_cross_entropy" in message
    path = write(tmp_path, "training:\n  loss: {transformation: 0.1}\n")
    with pytest.raises(ConfigError, match="training.loss.transformation.*'protopnet'"):
        load_config(path)


def test_xprotonet_options_are_checked_against_its_constructor(tmp_path):
    path = write(tmp_path, XPROTONET.replace("xprotonet\n", "xprotonet\n  xprotonet: "
                                             "{latent_activation: sigmoid, last_layer: full}\n"))
    assert load_config(path).model.xprotonet == {"latent_activation": "sigmoid",
                                                 "last_layer": "full"}
    for option, expected in (("{latent_activaton: sigmoid}", "model.xprotonet.latent_activaton"),
                             ("{prototype_dim: 8}", "model.xprotonet.prototype_dim"),
                             ("{last_layer: dense}", "'dense' is not one of"),
                             ("{incorrect_class_connection: high}", "expected a number")):
        path = write(tmp_path, XPROTONET.replace("xprotonet\n", f"xprotonet\n  xprotonet: "
                                                 f"{option}\n"))
        with pytest.raises(ConfigError, match=expected) as error:
            load_config(path)
        assert str(path) in str(error.value)


def test_architecture_specific_model_keys_must_match_the_architecture(tmp_path):
    path = write(tmp_path, XPROTONET.replace("xprotonet\n", "xprotonet\n  activation: linear\n"))
    with pytest.raises(ConfigError, match="'model.activation'.*ProtoPNet option"):
        load_config(path)
    path = write(tmp_path, "model:\n  xprotonet: {last_layer: full}\n")
    with pytest.raises(ConfigError, match="'model.xprotonet'.*'protopnet'"):
        load_config(path)
    with pytest.raises(ConfigError, match="'model.architecture'.*'protopnet', 'xprotonet'"):
        load_config(None, ["model.architecture=protonet"])


def test_multi_label_data_needs_xprotonet_and_no_single_label_warm_start(tmp_path):
    path = write(tmp_path, "data:\n  dataset: SyntheticRadiographs\n")
    with pytest.raises(ConfigError, match="multi-label.*model.architecture: xprotonet"):
        load_config(path)
    path = write(tmp_path, XPROTONET + "training:\n  pretrain_epochs: 2\n")
    with pytest.raises(ConfigError, match="'training.pretrain_epochs'.*multi-label"):
        load_config(path)


def test_saved_xprotonet_config_loads_back_identically(tmp_path):
    config = load_config(None, ["model.architecture=xprotonet",
                                "data.dataset=SyntheticRadiographs",
                                "model.xprotonet={last_layer: full}",
                                "training.loss.occurrence_sparsity=0.01"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_localization_method_options_are_checked_when_the_config_loads(tmp_path):
    """A misspelt or invalid method option is refused before training, not at push."""
    for method, options, expected in (
            ("hdm", "{benchmark_step: 10}", "'hdm'.*'benchmark_step'.*benchmark_steps"),
            ("mdm", "{score: peek}", "score must be one of"),
            ("upsample", "{percentile: 300}", r"percentile must be a number in \[0, 100\]"),
            ("hdm", "10", "expected a mapping of option names to values")):
        path = write(tmp_path, f"localization:\n  method_options: {{{method}: {options}}}\n")
        with pytest.raises(ConfigError, match=expected) as error:
            load_config(path)
        assert str(error.value).startswith(f"'localization.method_options.{method}' in {path}")
    path = write(tmp_path, "localization:\n  method_options: {hdm: {benchmark_steps: 10}}\n")
    assert load_config(path).localization.method_options == {"hdm": {"benchmark_steps": 10}}


def test_metric_options_name_the_score_as_the_learned_masks_do():
    config = load_config(None, ["localization.metric_options={score: pooled}"])
    assert config.localization.metric_options == {"score": "pooled"}
    with pytest.raises(ConfigError, match=r"unknown config key "
                       r"'localization\.metric_options\.similarity_at'.*allowed: .*score"):
        load_config(None, ["localization.metric_options={similarity_at: max}"])
