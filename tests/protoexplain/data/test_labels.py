"""What a data set says about its labels: class names and multi-hot labels."""

from types import SimpleNamespace

from protoexplain.data import ChestXray14, SyntheticParts
from protoexplain.data.labels import class_names_of, is_multi_label


def test_class_names_are_the_data_sets_own_or_else_the_class_indices():
    assert class_names_of(SimpleNamespace(classes=("wren", "finch"), num_classes=2)) == [
        "wren", "finch"]
    assert class_names_of(SimpleNamespace(num_classes=3)) == ["0", "1", "2"]
    parts = SyntheticParts(split="test", num_classes=2, image_size=32, num_samples=2)
    assert class_names_of(parts) == list(parts.classes) and len(parts.classes) == 2


def test_only_sets_that_say_so_are_multi_label():
    assert is_multi_label(SimpleNamespace(multi_label=True))
    assert not is_multi_label(SimpleNamespace(multi_label=False))
    assert not is_multi_label(SimpleNamespace())
    assert ChestXray14.multi_label and not getattr(SyntheticParts, "multi_label", False)
