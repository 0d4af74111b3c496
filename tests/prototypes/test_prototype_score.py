"""PrototypeScore: a prototype's similarity explained by pytorch-grad-cam and captum gives
what our own Grad-CAM and SmoothGrad give for the same score."""

from __future__ import annotations

import pytest
import torch

import hdm
from prototypes import PrototypeScore
from prototypes.localization.gradients import smoothgrad_localization
from prototypes.localization.result import min_max_normalise
from tests.prototypes.tiny_protopnet import make_model
from tests.prototypes.tiny_xprotonet import make_xprotonet


@pytest.fixture
def model_and_images():
    model = make_model(image_size=32, width=4).eval()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    return model, images


def test_scores_of_outputs_rows_and_images(model_and_images):
    model, images = model_and_images
    score = PrototypeScore(model, 4)
    with torch.no_grad():
        output = model(images)
        torch.testing.assert_close(score(output), output.similarities[:, 4])
        torch.testing.assert_close(score(images), output.similarities[:, 4])
        torch.testing.assert_close(score(output.similarities[1]), output.similarities[1, 4])
        per_image = PrototypeScore(model, [0, 5, 2])
        torch.testing.assert_close(per_image.forward(images),
                                   output.similarities[[0, 1, 2], [0, 5, 2]])
        xprotonet = make_xprotonet().eval()
        small = images[:, :, :16, :16]
        torch.testing.assert_close(PrototypeScore(xprotonet, 1)(small),
                                   xprotonet(small).similarities[:, 1])
    with pytest.raises(ValueError, match="prototype_id"):
        PrototypeScore(model, 6)


def test_pytorch_grad_cam_matches_our_grad_cam(model_and_images):
    pytorch_grad_cam = pytest.importorskip("pytorch_grad_cam")
    model, images = model_and_images
    layer = model.features[-1]  # the trunk's last ReLU (4x4 at 32 px)
    score = PrototypeScore(model, 3)
    theirs = pytorch_grad_cam.GradCAM(model=score.similarity_model, target_layers=[layer])(
        input_tensor=images, targets=[score] * len(images))
    ours = hdm.GradCAM(model, layers=[layer])(images, score)
    # pytorch-grad-cam normalises and then resizes; ours resizes and then normalises:
    # the same map up to an affine rescaling, which min-max normalisation removes
    theirs = min_max_normalise(torch.as_tensor(theirs))
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)
    assert ours.flatten(1).std(dim=1).max() > 0.05  # not only flat maps


def test_captum_layer_grad_cam_matches_our_grad_cam(model_and_images):
    captum = pytest.importorskip("captum.attr")
    model, images = model_and_images
    layer = model.features[-1]
    score = PrototypeScore(model, [1, 2, 5])
    cam = captum.LayerGradCam(score.forward, layer).attribute(images, relu_attributions=True)
    theirs = captum.LayerAttribution.interpolate(cam, (32, 32), "bilinear")[:, 0]
    ours = hdm.GradCAM(model, layers=[layer])(images, score)
    torch.testing.assert_close(min_max_normalise(theirs.detach()), ours, atol=1e-5, rtol=0)


def test_captum_smoothgrad_matches_ours_without_noise(model_and_images):
    """With no noise SmoothGrad averages identical gradients: the squared-gradient maps of
    captum's NoiseTunnel and of our SmoothGrad must agree exactly."""
    captum = pytest.importorskip("captum.attr")
    model, images = model_and_images
    score = PrototypeScore(model, 3)  # one id: NoiseTunnel enlarges the batch
    tunnel = captum.NoiseTunnel(captum.Saliency(score.forward))
    squared = tunnel.attribute(images, nt_type="smoothgrad_sq", nt_samples=4, stdevs=0.0,
                               abs=False)
    theirs = min_max_normalise(squared.amax(dim=1))
    ours = smoothgrad_localization(model, images, [3, 3, 3], samples=4, noise=0.0).maps
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_captum_smoothgrad_with_noise_agrees_with_ours(model_and_images):
    """With noise both draw their own random fields: with many samples the maps converge to
    the same expectation."""
    captum = pytest.importorskip("captum.attr")
    model, images = model_and_images
    ids = [0, 3, 5]
    sigma = 0.15 * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))
    torch.manual_seed(0)
    theirs = []
    for b in range(len(images)):  # one image at a time: captum takes one noise level each
        single = PrototypeScore(model, ids[b])
        attribution = captum.NoiseTunnel(captum.Saliency(single.forward)).attribute(
            images[b:b + 1], nt_type="smoothgrad_sq", nt_samples=300, nt_samples_batch_size=100,
            stdevs=float(sigma[b]), abs=False)
        theirs.append(attribution.amax(dim=1)[0])
    theirs = min_max_normalise(torch.stack(theirs))
    ours = smoothgrad_localization(model, images, ids, samples=300, noise=0.15).maps
    again = smoothgrad_localization(model, images, ids, samples=300, noise=0.15, seed=1).maps

    def correlation(a, b):
        return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])

    for b in range(len(images)):
        # as close to ours as ours is to itself with other noise
        assert correlation(theirs[b], ours[b]) > correlation(again[b], ours[b]) - 0.05
        # and over 4x4-pixel cells, where a localization looks, close to equal
        cells = [torch.nn.functional.avg_pool2d(m[b][None], 4) for m in (theirs, ours)]
        assert correlation(*cells) > 0.9
