"""ChestXray14 on a small release in the official formats, written into a temporary folder."""

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from protoexplain.data import ChestXray14
from protoexplain.data.chestxray14 import FINDINGS, ChestXrayFormatError
from protoexplain.data.image_io import ImageReadError
from protoexplain.metrics.pairs import select_class_images

ENTRY_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
                "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"

# (name, finding labels, patient, official split, folder); image size 48 unless listed
IMAGES = [
    ("00000001_000.png", "Cardiomegaly", 1, "train_val", "images_001"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "train_val", "images_001"),
    ("00000002_000.png", "No Finding", 2, "train_val", "images_001"),
    ("00000003_000.png", "Infiltration|Mass|Nodule", 3, "train_val", "images_001"),
    ("00000004_000.png", "Effusion", 4, "train_val", "images_002"),
    ("00000004_001.png", "No Finding", 4, "train_val", "images_002"),
    ("00000005_000.png", "Hernia", 5, "train_val", "images_002"),
    ("00000006_000.png", "Pleural_Thickening|Pneumonia", 6, "train_val", "images_002"),
    ("00000007_000.png", "Atelectasis", 7, "train_val", "images_002"),
    ("00000008_000.png", "Edema|Fibrosis", 8, "train_val", "images_002"),
    ("00000009_000.png", "Infiltration", 9, "test", "images_002"),
    ("00000010_000.png", "Nodule|Pneumothorax", 10, "test", "images_002"),
    ("00000010_001.png", "No Finding", 10, "test", "images_002"),
]
FULL_SIZE = {"00000009_000.png"}
"""Images written at the released 1024 x 1024; the others are downscaled 48-pixel copies."""

# (name, finding as BBox_List_2017.csv spells it, x, y, w, h) in 1024-pixel coordinates
BOXES = [
    ("00000009_000.png", "Infiltrate", 128.0, 256.0, 384.0, 512.0),
    ("00000010_000.png", "Nodule", 512.0, 64.0, 64.0, 32.0),
    ("00000010_000.png", "Pneumothorax", 600.0, 100.0, 300.0, 500.0),
    ("00000003_000.png", "Mass", 0.0, 0.0, 256.0, 1024.0),
]


@dataclass
class Release:
    root: Path

    def path(self, name: str) -> Path:
        folder = next(entry[4] for entry in IMAGES if entry[0] == name)
        return self.root / folder / "images" / name


def _grey_level(position: int) -> int:
    return 10 + 15 * position


def write_release(root: Path) -> Release:
    """Data_Entry_2017.csv, the two list files, BBox_List_2017.csv (rows ending in empty
    fields) and grey PNGs in images_00N/images/, each image a uniform grey level that
    identifies it."""
    entry_lines = [ENTRY_HEADER]
    lists: dict[str, list[str]] = {"train_val": [], "test": []}
    for position, (name, labels, patient, split, folder) in enumerate(IMAGES):
        entry_lines.append(f"{name},{labels},0,{patient},{40 + position}Y,M,PA,2500,2048,"
                           "0.143,0.143")
        lists[split].append(name)
        size = 1024 if name in FULL_SIZE else 48
        image = np.full((size, size), _grey_level(position), dtype=np.uint8)
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / folder / "images" / name), image)
    (root / "Data_Entry_2017.csv").write_text("\n".join(entry_lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(lists["train_val"]) + "\n")
    (root / "test_list.txt").write_text("\n".join(lists["test"]) + "\n")
    box_lines = [BOX_HEADER] + [f"{name},{finding},{x},{y},{w},{h},,," for
                                name, finding, x, y, w, h in BOXES]
    (root / "BBox_List_2017.csv").write_text("\n".join(box_lines) + "\n")
    return Release(root)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Release:
    """A release that tests only read."""
    return write_release(tmp_path_factory.mktemp("chestxray14"))


@pytest.fixture
def fresh(tmp_path) -> Release:
    """A release a test may damage."""
    return write_release(tmp_path)


def _names(data: ChestXray14) -> list[str]:
    return [record.name for record in data.records]


def test_labels_are_multi_hot_with_no_finding_all_zero(release):
    data = ChestXray14(release.root, "train", val_fraction=0.0, image_size=16)
    assert data.classes == list(FINDINGS) and data.num_classes == 14 and data.multi_label
    by_name = {name: data[i]["label"] for i, name in enumerate(_names(data))}
    expected = torch.zeros(14)
    expected[[FINDINGS.index("Infiltration"), FINDINGS.index("Mass"),
              FINDINGS.index("Nodule")]] = 1
    torch.testing.assert_close(by_name["00000003_000.png"], expected)
    torch.testing.assert_close(by_name["00000002_000.png"], torch.zeros(14))
    assert by_name["00000001_001.png"].sum() == 2
    assert by_name["00000001_001.png"].dtype == torch.float32


def test_splits_follow_the_official_lists_and_divide_train_val_by_patient(release):
    train = ChestXray14(release.root, "train", val_fraction=0.3, image_size=16)
    val = ChestXray14(release.root, "val", val_fraction=0.3, image_size=16)
    test = ChestXray14(release.root, "test", image_size=16)
    official = {split: [e[0] for e in IMAGES if e[3] == split] for split in ("train_val", "test")}
    assert _names(test) == official["test"]
    assert sorted(_names(train) + _names(val)) == sorted(official["train_val"])
    train_patients = {record.patient for record in train.records}
    val_patients = {record.patient for record in val.records}
    assert train_patients.isdisjoint(val_patients)
    assert len(val_patients) == round(8 * 0.3)  # 8 train_val patients
    again = ChestXray14(release.root, "val", val_fraction=0.3, image_size=16)
    assert _names(again) == _names(val)
    others = [ChestXray14(release.root, "val", val_fraction=0.3, seed=seed, image_size=16)
              for seed in range(1, 6)]
    assert any(_names(other) != _names(val) for other in others)


def test_images_are_grey_on_three_channels_found_in_every_images_folder(release):
    data = ChestXray14(release.root, "train", val_fraction=0.0, image_size=None)
    folders = {path.parent.parent.name for path in data.paths}
    assert folders == {"images_001", "images_002"}
    for index, name in enumerate(_names(data)):
        image = data[index]["image"]
        position = [e[0] for e in IMAGES].index(name)
        assert image.shape == (3, 48, 48) and image.dtype == torch.float32
        torch.testing.assert_close(image, torch.full_like(image, _grey_level(position) / 255))


def test_boxes_are_scaled_from_1024_pixels_and_carried_through_resizing(release):
    data = ChestXray14(release.root, "test", image_size=32)
    items = {name: data[i] for i, name in enumerate(_names(data))}
    full = items["00000009_000.png"]  # a 1024-pixel file: boxes * 32 / 1024
    torch.testing.assert_close(full["boxes"], torch.tensor([[8.0, 24.0, 4.0, 16.0]]))
    assert full["box_labels"].tolist() == [FINDINGS.index("Infiltration")]
    small = items["00000010_000.png"]  # a 48-pixel copy: the same boxes relative to the image
    torch.testing.assert_close(small["boxes"], torch.tensor([[2.0, 3.0, 16.0, 18.0],
                                                             [3.125, 18.75, 18.75, 28.125]]))
    assert small["box_labels"].tolist() == [FINDINGS.index("Nodule"),
                                            FINDINGS.index("Pneumothorax")]
    empty = items["00000010_001.png"]
    assert empty["boxes"].shape == (0, 4) and empty["box_labels"].shape == (0,)
    assert empty["box_labels"].dtype == torch.long and empty["image"].shape == (3, 32, 32)


def test_boxes_keep_the_files_pixels_without_resizing(release):
    data = ChestXray14(release.root, "train", val_fraction=0.0, image_size=None)
    item = data[_names(data).index("00000003_000.png")]
    torch.testing.assert_close(item["boxes"], torch.tensor([[0.0, 48.0, 0.0, 12.0]]))


def test_only_with_boxes_keeps_the_localization_subset(release):
    data = ChestXray14(release.root, "test", only_with_boxes=True, image_size=16)
    assert _names(data) == ["00000009_000.png", "00000010_000.png"]
    without = ChestXray14(release.root, "test", boxes=False, image_size=16)
    assert all(without[i]["boxes"].shape == (0, 4) for i in range(len(without)))



def test_annotation_gives_label_and_box_findings_without_reading_the_image(fresh):
    data = ChestXray14(fresh.root, "test", image_size=16)
    expected = [data[i] for i in range(len(data))]
    for path in data.paths:
        path.write_bytes(b"not a png")  # any image read would now fail
    for index, item in enumerate(expected):
        annotation = data.annotation(index)
        assert torch.equal(annotation["label"], item["label"])
        assert torch.equal(annotation["box_labels"], item["box_labels"])
    chosen = select_class_images(data, range(data.num_classes), 1, require_box=True,
                                 progress=False)
    assert any(chosen.values())  # pair selection went through annotation() alone

def test_a_missing_image_file_is_named(fresh):
    fresh.path("00000010_001.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"00000010_001\.png"):
        ChestXray14(fresh.root, "test")


def test_an_unreadable_image_is_named_when_loaded(fresh):
    fresh.path("00000009_000.png").write_bytes(b"not a png")
    data = ChestXray14(fresh.root, "test")
    with pytest.raises(ImageReadError, match=r"00000009_000\.png"):
        data[0]


def test_a_listed_image_without_a_row_is_named_with_the_list_file_and_line(fresh):
    with (fresh.root / "test_list.txt").open("a") as handle:
        handle.write("00000099_000.png\n")
    with pytest.raises(ChestXrayFormatError, match=r"test_list\.txt:4: image 00000099_000\.png"):
        ChestXray14(fresh.root, "test")


def test_an_unknown_finding_is_named_with_file_and_line(fresh):
    path = fresh.root / "Data_Entry_2017.csv"
    path.write_text(path.read_text().replace("Cardiomegaly|Emphysema", "Cardiomegaly|Flu"))
    with pytest.raises(ChestXrayFormatError,
                       match=r"Data_Entry_2017\.csv:3: unknown finding 'Flu'"):
        ChestXray14(fresh.root, "test")


def test_a_missing_metadata_file_or_column_is_named(fresh):
    path = fresh.root / "Data_Entry_2017.csv"
    path.write_text(path.read_text().replace("Patient ID", "Patient"))
    with pytest.raises(ChestXrayFormatError, match=r"lacks column\(s\) \['Patient ID'\]"):
        ChestXray14(fresh.root, "test")
    path.unlink()
    with pytest.raises(ChestXrayFormatError, match=r"not found: .*Data_Entry_2017\.csv"):
        ChestXray14(fresh.root, "test")


def test_box_rows_must_end_in_empty_fields_and_hold_positive_sizes(fresh):
    path = fresh.root / "BBox_List_2017.csv"
    original = path.read_text()
    path.write_text(original.replace("64.0,32.0,,,", "64.0,32.0,,7,"))
    with pytest.raises(ChestXrayFormatError, match=r"BBox_List_2017\.csv:3: expected"):
        ChestXray14(fresh.root, "test")
    path.write_text(original.replace("64.0,32.0,,,", "64.0,0.0,,,"))
    with pytest.raises(ChestXrayFormatError, match=r"BBox_List_2017\.csv:3: .*positive"):
        ChestXray14(fresh.root, "test")
    path.write_text(original.replace("Nodule", "Tumour"))
    with pytest.raises(ChestXrayFormatError, match=r"BBox_List_2017\.csv:3: unknown finding"):
        ChestXray14(fresh.root, "test")


def test_a_repeated_image_row_is_named(fresh):
    path = fresh.root / "Data_Entry_2017.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(ChestXrayFormatError, match=r":15: image 00000001_000\.png already given "
                                                   r"on line 2"):
        ChestXray14(fresh.root, "test")


def test_bad_arguments_are_named(release):
    with pytest.raises(ValueError, match="root"):
        ChestXray14(None, "test")
    with pytest.raises(ValueError, match="split"):
        ChestXray14(release.root, "validation")
    with pytest.raises(ValueError, match="val_fraction"):
        ChestXray14(release.root, "train", val_fraction=1.0)
