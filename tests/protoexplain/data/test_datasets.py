"""The data set registry: every data set of the contract by its class name."""

import inspect

import pytest

from protoexplain import data
from protoexplain.config import ConfigError, dataset_class, load_config
from protoexplain.factory import build_dataset


def test_every_data_set_is_registered_under_its_class_name_with_root_and_split():
    assert set(data.DATASETS) == {"SyntheticParts", "SyntheticRadiographs", "FashionComposites",
                                  "CUB200", "ChestXray14", "ImageFolder"}
    for name, cls in data.DATASETS.items():
        assert cls.__name__ == name and getattr(data, name) is cls
        assert {"root", "split"} <= set(inspect.signature(cls).parameters), name


def test_a_config_builds_the_registered_class_and_an_unknown_name_lists_the_known_ones():
    config = load_config(None, ["data.dataset=SyntheticRadiographs",
                                "data.options={image_size: 32, num_samples: 4}",
                                "model.architecture=xprotonet", "training.pretrain_epochs=0"])
    assert type(build_dataset(config, "val")) is data.DATASETS["SyntheticRadiographs"]
    assert dataset_class("CUB200") is data.CUB200
    with pytest.raises(ConfigError) as refused:
        dataset_class("ImageReadError", "run.yaml")  # exported by protoexplain.data, not a set
    assert str(refused.value).startswith(
        "'data.dataset' in run.yaml: unknown data set 'ImageReadError'; choose one of "
        "SyntheticParts, ")
