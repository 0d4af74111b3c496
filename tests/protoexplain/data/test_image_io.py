import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from protoexplain.data.image_io import (
    ImageReadError,
    check_bad_image_policy,
    drop_unreadable,
    read_image,
    read_mask,
)


def _rgb(height: int = 6, width: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_read_image_returns_rgb_channels_first_in_unit_range(tmp_path):
    rgb = _rgb()
    cv2.imwrite(str(tmp_path / "a.png"), rgb[:, :, ::-1])  # OpenCV writes BGR
    image = read_image(tmp_path / "a.png")
    assert image.dtype == torch.float32 and image.shape == (3, 6, 8)
    assert torch.equal(image, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_grey_image_is_repeated_on_three_channels(tmp_path):
    grey = _rgb()[:, :, 0]
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    image = read_image(tmp_path / "g.png")
    assert image.shape == (3, 6, 8)
    for channel in image:
        assert torch.equal(channel, torch.from_numpy(grey).float() / 255)


def test_sixteen_bit_png_is_scaled_by_65535(tmp_path):
    values = np.array([[0, 257, 65535], [1000, 30000, 65534]], dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), values)
    image = read_image(tmp_path / "deep.png")
    expected = torch.from_numpy(values.astype(np.float32) / 65535)
    assert torch.allclose(image[0], expected) and torch.equal(image[0], image[2])


def test_palette_image_comes_back_in_its_colours(tmp_path):
    rgb = _rgb()
    palette_image = Image.fromarray(rgb).convert("P")
    palette_image.save(tmp_path / "p.png")
    expected = np.array(palette_image.convert("RGB"))
    image = read_image(tmp_path / "p.png")
    assert torch.equal(image, torch.from_numpy(expected).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("background", [1.0, 0.0, 0.5])
def test_alpha_is_composited_over_the_background(tmp_path, background):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent red
    rgba[1, 0] = (0, 0, 255, 51)  # 20 % blue
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    image = read_image(tmp_path / "t.png", alpha_background=background)
    assert torch.allclose(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(image[:, 0, 1], torch.full((3,), background))
    blue = 0.2 * torch.tensor([0.0, 0.0, 1.0]) + 0.8 * background
    assert torch.allclose(image[:, 1, 0], blue, atol=1e-6)


def test_grey_with_alpha_is_composited(tmp_path):
    Image.fromarray(np.array([[[100, 0], [100, 255]]], dtype=np.uint8), "LA").save(
        tmp_path / "la.png")
    image = read_image(tmp_path / "la.png", alpha_background=0.0)
    assert torch.allclose(image[:, 0, 0], torch.zeros(3))
    assert torch.allclose(image[:, 0, 1], torch.full((3,), 100 / 255))


def test_missing_file_error_names_the_file(tmp_path):
    with pytest.raises(ImageReadError, match="nowhere.jpg"):
        read_image(tmp_path / "nowhere.jpg")


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_corrupt_file_error_names_the_file(tmp_path, content):
    path = tmp_path / "broken.jpg"
    if content == "truncated":
        ok, encoded = cv2.imencode(".jpg", _rgb(40, 40))
        content = encoded.tobytes()[: len(encoded) // 2]
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken.jpg"):
        read_image(path)


def test_read_mask_is_true_above_the_threshold(tmp_path):
    values = np.array([[0, 1, 127], [128, 255, 0]], dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "m.png"), values)
    assert read_mask(tmp_path / "m.png").tolist() == [[False, True, True], [True, True, False]]
    assert read_mask(tmp_path / "m.png", threshold=127).tolist() == [
        [False, False, False], [True, True, False]]


def test_drop_unreadable_keeps_good_entries_and_reports_each_bad_file(tmp_path):
    cv2.imwrite(str(tmp_path / "good.png"), _rgb())
    (tmp_path / "bad.png").write_bytes(b"junk")
    entries = ["good", "bad", "good"]
    kept, failures = drop_unreadable(entries, lambda name: [tmp_path / f"{name}.png"],
                                     progress=False)
    assert kept == ["good", "good"]
    assert [path.name for path, _ in failures] == ["bad.png"]
    assert "bad.png" in failures[0][1]


def test_unknown_bad_image_policy_is_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="'raise', 'skip'"):
        check_bad_image_policy("ignore")
