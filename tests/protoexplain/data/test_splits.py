import pytest

from protoexplain.data.splits import check_split, split_sample_count, stratified_split


def _data(per_class=(20, 10, 3)):
    keys, labels = [], []
    for label, count in enumerate(per_class):
        keys += [f"class{label}/img{i}.jpg" for i in range(count)]
        labels += [label] * count
    return keys, labels


def test_split_is_disjoint_complete_and_stratified():
    keys, labels = _data()
    parts = stratified_split(keys, labels, val_fraction=0.2, test_fraction=0.1, seed=3)
    everything = parts["train"] + parts["val"] + parts["test"]
    assert sorted(everything) == list(range(len(keys)))
    val_per_class = [sum(labels[i] == c for i in parts["val"]) for c in range(3)]
    test_per_class = [sum(labels[i] == c for i in parts["test"]) for c in range(3)]
    assert val_per_class == [4, 2, 1]  # round(20 * .2), round(10 * .2), round(3 * .2)
    assert test_per_class == [2, 1, 0]


def test_split_depends_on_keys_and_seed_not_on_order():
    keys, labels = _data()
    parts = stratified_split(keys, labels, val_fraction=0.3, seed=1)
    reversed_parts = stratified_split(keys[::-1], labels[::-1], val_fraction=0.3, seed=1)
    n = len(keys)
    assert sorted(keys[i] for i in parts["val"]) == sorted(
        keys[::-1][i] for i in reversed_parts["val"])
    assert [n - 1 - i for i in reversed_parts["val"]][::-1] == parts["val"]
    assert stratified_split(keys, labels, val_fraction=0.3, seed=2)["val"] != parts["val"]


def test_every_class_keeps_a_training_item_and_validation_gives_way_first():
    parts = stratified_split(["a", "b"], [0, 0], val_fraction=0.5, test_fraction=0.45, seed=0)
    assert len(parts["train"]) == 1 and len(parts["test"]) == 1 and len(parts["val"]) == 0
    single = stratified_split(["a"], [0], val_fraction=0.5, test_fraction=0.45, seed=0)
    assert single == {"train": [0], "val": [], "test": []}


def test_fractions_must_leave_room_for_training():
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction"):
        stratified_split(["a"], [0], val_fraction=0.6, test_fraction=0.4)
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(["a"], [0], val_fraction=1.5)


def test_unknown_split_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="'train', 'val', 'test'"):
        check_split("validation")


def test_sample_count_is_a_number_or_the_splits_entry_or_its_default():
    defaults = {"train": 20, "val": 5, "test": None}
    assert split_sample_count("Set", "train", 8, defaults) == 8
    assert split_sample_count("Set", "train", {"train": 12}, defaults) == 12
    assert split_sample_count("Set", "val", {"train": 12}, defaults) == 5
    assert split_sample_count("Set", "test", {"train": 12}, defaults) is None
    assert split_sample_count("Set", "test", None, defaults) is None
    with pytest.raises(ValueError, match=r"Set: num_samples names unknown splits \['tran'\]"):
        split_sample_count("Set", "train", {"tran": 5}, defaults)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="Set: num_samples must be a whole number >= 1"):
            split_sample_count("Set", "train", bad, defaults)
