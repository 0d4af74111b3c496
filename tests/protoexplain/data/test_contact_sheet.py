import cv2
import numpy as np
import torch

from protoexplain.data import SyntheticParts, write_contact_sheet
from protoexplain.data.contact_sheet import PART_COLOURS


def test_contact_sheet_writes_a_readable_png_of_the_expected_size(tmp_path):
    dataset = SyntheticParts(num_samples=8, image_size=32)
    path = write_contact_sheet(dataset, tmp_path / "sheets" / "parts.png", count=6, columns=4,
                               tile_size=64)
    sheet = cv2.imread(str(path))
    assert path.suffix == ".png"
    assert sheet.shape == (2 * (64 + 18 + 4) + 4 + 24, 4 * (64 + 4) + 4, 3)
    first_tile = sheet[4 + 18 : 4 + 18 + 64, 4 : 4 + 64, ::-1]
    assert first_tile.std() > 10  # an image was drawn, not an empty canvas
    for colour in PART_COLOURS[: len(dataset.part_names)]:  # the legend shows every part
        assert (sheet[-24:, :, ::-1] == colour).all(axis=2).any()


class ObjectMaskOnly(torch.utils.data.Dataset):
    classes = ["square"]

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> dict:
        mask = torch.zeros(20, 30, dtype=torch.bool)
        mask[5:15, 10:20] = True
        image = torch.rand(1, 20, 30)
        return {"image": image, "label": 0, "object_mask": mask}


def test_contact_sheet_handles_grey_non_square_sets_without_parts(tmp_path):
    path = write_contact_sheet(ObjectMaskOnly(), tmp_path / "objects.png", columns=2,
                               tile_size=60)
    sheet = cv2.imread(str(path))
    assert sheet.shape == (60 + 18 + 4 + 4 + 24, 2 * (60 + 4) + 4, 3)
    tile = sheet[4 + 18 : 4 + 18 + 60, 4 : 4 + 60]
    assert (tile == 255).all(axis=2).any()  # white object outline
    assert np.all(tile[45:] == 0)  # letterbox below the 60 x 40 image
