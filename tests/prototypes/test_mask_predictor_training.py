"""Training the amortized mask predictor: the objective's terms on hand-computed cases, the
pairs a step draws, and a tiny predictor that finds evidence whose place is known."""

import pytest
import torch
from torch import nn

from prototypes import localize
from prototypes.localization.scores import PairScores
from prototypes.mask_predictor import MaskPredictor, MaskPredictorConfig
from prototypes.mask_predictor_training import (
    MaskerTrainingConfig,
    _draw_pairs,
    masker_loss,
    train_mask_predictor,
)
from prototypes.model import ProtoPNetOutput
from tests.prototypes.colour_squares import COLOURS, colour_model, colour_square_pairs
from tests.prototypes.tiny_protopnet import make_model


class MeanBrightness(nn.Module):
    """One prototype whose similarity is the image's mean value, at a 1x1 latent position."""

    def forward(self, images: torch.Tensor) -> ProtoPNetOutput:
        mean = images.mean(dim=(1, 2, 3))
        maps = mean.view(-1, 1, 1, 1)
        return ProtoPNetOutput(logits=mean[:, None], similarity_maps=maps,
                               similarities=mean[:, None], min_distances=-mean[:, None],
                               distance_maps=-maps, latent=maps)


def _terms(grid: torch.Tensor, baseline_score: float = 0.0, **weights):
    model = MeanBrightness()
    images, baseline = torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    ids = torch.tensor([0])
    scores = PairScores(model, images, ids, "peak")  # s0 = 1
    config = MaskerTrainingConfig(**weights)
    return masker_loss(model, grid, torch.logit(grid.clamp(1e-4, 1 - 1e-4)), images, baseline,
                       scores, torch.tensor([baseline_score]), config)  # s_b


def test_constant_mask_keeps_and_loses_its_share_of_the_score():
    # kept image = 0.25 everywhere: s = 0.25, ((0.25 - 1) / 1)^2 = 0.5625; removed: s = 0.75,
    # (0.75 - 0)^2 = 0.5625; area 3 * 0.25; a constant mask has no total variation.
    terms = _terms(torch.full((1, 2, 2), 0.25), tv_weight=1.0)
    torch.testing.assert_close(terms.fidelity, torch.tensor([0.5625]))
    torch.testing.assert_close(terms.deletion, torch.tensor([0.5625]))
    torch.testing.assert_close(terms.area, torch.tensor([0.75]))
    torch.testing.assert_close(terms.smoothness, torch.tensor([0.0]))
    torch.testing.assert_close(terms.total, torch.tensor([1.875]))


def test_half_mask_terms_and_total_variation():
    # left column 0, right column 1: the upsampled mask averages 0.5, so both scores are 0.5;
    # horizontal differences are all 1, vertical ones 0: TV = tv_weight * 1.
    grid = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    terms = _terms(grid, tv_weight=2.0, area_weight=1.0, fidelity_weight=4.0,
                   deletion_weight=0.5)
    torch.testing.assert_close(terms.fidelity, torch.tensor([4 * 0.25]))
    torch.testing.assert_close(terms.deletion, torch.tensor([0.5 * 0.25]))
    torch.testing.assert_close(terms.area, torch.tensor([0.5]))
    torch.testing.assert_close(terms.smoothness, torch.tensor([2.0]))


def test_a_full_mask_costs_only_its_area_and_no_deletion_term_when_off():
    terms = _terms(torch.ones(1, 2, 2), deletion_weight=0.0, area_weight=3.0)
    torch.testing.assert_close(terms.fidelity, torch.tensor([0.0]))
    torch.testing.assert_close(terms.deletion, torch.tensor([0.0]))
    torch.testing.assert_close(terms.area, torch.tensor([3.0]))


def test_terms_of_a_pair_with_little_evidence_are_capped():
    # s_b = 0.9: the evidence unit is 0.1; kept score 0.25 gives ((0.25 - 1) / 0.1)^2 = 56.25,
    # removed score 0.75 is below s_b: no deletion loss.
    grid = torch.full((1, 2, 2), 0.25)
    capped = _terms(grid, baseline_score=0.9, loss_cap=1.0, fidelity_weight=2.0)
    torch.testing.assert_close(capped.fidelity, torch.tensor([2.0]))
    torch.testing.assert_close(capped.deletion, torch.tensor([0.0]))
    free = _terms(grid, baseline_score=0.9, loss_cap=None)
    torch.testing.assert_close(free.fidelity, torch.tensor([56.25]))


def test_steps_draw_own_class_prototypes_and_skip_rare_classes():
    model = make_model(num_classes=3, prototypes_per_class=2)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    config = MaskerTrainingConfig(prototypes_per_image=2, rare_classes=[2], rare_share=0.0)
    image_index, ids = _draw_pairs(model, labels, config, step=3)
    assert torch.equal(model.prototype_classes[ids], labels[image_index])
    assert set(image_index.tolist()) == {0, 1, 4, 5}
    assert all((image_index == i).sum() == 2 for i in (0, 1, 4, 5))
    again = _draw_pairs(model, labels, config, step=3)
    assert torch.equal(again[1], ids)  # seeded by the step


class Squares(torch.utils.data.Dataset):
    """Noise images with one 8 px square of each prototype's colour on the 4 px grid; the
    label picks which prototype a training pair explains."""

    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.items = []
        for index in range(count):
            image = torch.rand(3, 32, 32, generator=generator)
            cells = torch.randperm(49, generator=generator)[:2]
            for cell, colour in zip(cells.tolist(), COLOURS, strict=True):
                y, x = divmod(cell, 7)
                image[:, 4 * y:4 * y + 8, 4 * x:4 * x + 8] = torch.tensor(colour).view(3, 1, 1)
            self.items.append({"image": image, "label": index % 2})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def test_trained_predictor_finds_the_square_that_upsampling_misses():
    model = colour_model(shift=1).eval()  # the similarity map peaks 4 px off the square
    torch.manual_seed(0)
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=16))
    config = MaskerTrainingConfig(steps=80, images_per_step=16, prototypes_per_image=1,
                                  blur_sigma=4.0, lr=3e-3, checkpoint_every=40)
    state = train_mask_predictor(model, Squares(64, seed=1), predictor, config, progress=False)
    assert state.step == 80 and [row["step"] for row in state.record["losses"]] == [40, 80]
    images, ids, inside = colour_square_pairs()
    energy = {}
    for method, options in (("amortized", {"masker": predictor}), ("upsample", {})):
        maps = localize(model, images, ids, method=method, **options).maps
        energy[method] = (maps * inside).flatten(1).sum(1) / maps.flatten(1).sum(1)
        if method == "amortized":
            peaks = maps.flatten(1).argmax(dim=1)
            assert inside.flatten(1)[torch.arange(len(ids)), peaks].all()
    assert energy["amortized"].min() > 0.6, energy
    assert energy["upsample"].max() < 0.3, energy


@pytest.mark.parametrize(("options", "message"), [
    ({"steps": -1}, "steps must be an integer >= 0"),
    ({"images_per_step": 0}, "images_per_step must be an integer > 0"),
    ({"baseline": "grey"}, "baseline must be one of"),
    ({"score": "mean"}, "score must be one of"),
    ({"rare_share": 1.5}, "rare_share must lie in"),
])
def test_bad_training_settings_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        MaskerTrainingConfig(**options)


def test_hdm_supervision_localizes_its_pairs_once_and_keeps_them_for_a_resume(monkeypatch):
    import prototypes.localization as localization
    from prototypes.localization.result import Localization

    calls = []

    def fake_hdm(model, images, prototype_ids, method):
        calls.append((method, len(prototype_ids)))
        maps = torch.zeros(len(images), 32, 32)
        maps[:, :16] = 1.0
        return Localization(maps=maps, boxes=torch.zeros(len(images), 4, dtype=torch.long))

    monkeypatch.setattr(localization, "localize", fake_hdm)
    model = colour_model(shift=1).eval()
    data = Squares(16, seed=2)
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=4))
    config = MaskerTrainingConfig(steps=2, images_per_step=4, prototypes_per_image=1,
                                  supervision_pairs=5, supervision_batch=3)
    state = train_mask_predictor(model, data, predictor, config, progress=False)
    assert calls == [("hdm", 5)]
    supervised = state.supervision
    assert supervised["maps"].shape == (5, 32, 32)
    labels = torch.tensor([data[int(i)]["label"] for i in supervised["indices"]])
    assert torch.equal(model.prototype_classes[supervised["prototype_ids"]], labels)
    assert state.record["losses"][-1]["supervision"] > 0
    longer = MaskerTrainingConfig(**{**config.__dict__, "steps": 3})
    train_mask_predictor(model, data, predictor, longer, state=state, progress=False)
    assert calls == [("hdm", 5)]  # the resumed training reuses the stored maps


def test_training_leaves_the_model_unchanged_and_without_gradients():
    torch.manual_seed(0)
    model = make_model(num_classes=2, image_size=32).train()
    state = {name: value.clone() for name, value in model.state_dict().items()}
    predictor = MaskPredictor(model, MaskPredictorConfig(conditioning="both", channels=4))
    config = MaskerTrainingConfig(steps=2, images_per_step=4, prototypes_per_image=2)
    train_mask_predictor(model, Squares(8, seed=3), predictor, config, progress=False)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert any(p.grad is not None for p in predictor.parameters())
