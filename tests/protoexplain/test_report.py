"""The report of a run: prototype pictures, the numbers (the logit's decomposition, the chosen
test images, the flags), the static site and its data.json, the `report` command, and the
local view that `explain` writes. The browser checks are in test_report_browser.py."""

import json
import os

import cv2
import pytest
import torch

from protoexplain.cli import main
from protoexplain.explain import explain_images
from protoexplain.factory import build_dataset
from protoexplain.report import write_prototype_pictures, write_report
from protoexplain.report.analysis import (
    Predictions,
    choose_test_images,
    class_weights,
    decompose_logit,
    ground_truth_mask,
    region_on_object,
)
from protoexplain.report.build import Localizer, benchmark_rows
from protoexplain.report.site import shown_rest
from protoexplain.run_dir import load_run
from protoexplain.visualize import BOX_COLOUR, FIELD_COLOUR
from prototypes import ProjectionRecord, duplicate_prototypes, localize
from tests.protoexplain.report_runs import (
    METHODS,
    broken_links,
    page_links,
    pushed_xprotonet_run,
    report_run,
    written_report,
)

SIZE = 16  # display_scale(16) == 12: every tile is 192 px wide, 18 + 192 px tall
SCALE = 12


def _record(prototype: int, class_index: int, sample_index: int) -> ProjectionRecord:
    return ProjectionRecord(prototype=prototype, class_index=class_index,
                            sample_index=sample_index, latent_position=(1, 0), distance=0.25,
                            similarity=1.5, receptive_field_box=(2, 10, 4, 12))


@pytest.fixture
def dataset():
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, SIZE, SIZE, generator=generator)} for _ in range(3)]


def _localizations(count: int) -> dict:
    maps = torch.zeros(count, SIZE, SIZE)
    return {"upsample": {"maps": maps, "boxes": torch.tensor([[0, 8, 0, 8]] * count)},
            "hdm": {"maps": maps + 1, "boxes": torch.tensor([[8, 16, 8, 16]] * count)}}


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_each_prototype_gets_a_picture_of_its_source_then_one_panel_per_method(
        tmp_path, dataset):
    records = [_record(3, 1, 2), _record(7, 0, 0)]
    paths = write_prototype_pictures(tmp_path, dataset, records, _localizations(2),
                                     ["wren", "finch"], progress=False)
    assert paths == ["prototypes/prototype_0003.png", "prototypes/prototype_0007.png"]
    assert sorted(os.listdir(tmp_path / "prototypes")) == ["prototype_0003.png",
                                                           "prototype_0007.png"]
    picture = _rgb(tmp_path / paths[0])
    tile, gap, strip = SIZE * SCALE, 4, 18
    assert picture.shape == (strip + tile, 3 * tile + 2 * gap, 3)
    # the receptive field (y0 2, x0 4) in cyan on the source, then each method's box in yellow
    assert tuple(picture[strip + 2 * SCALE, 4 * SCALE]) == FIELD_COLOUR
    assert tuple(picture[strip, tile + gap]) == BOX_COLOUR  # upsample's box at (0, 0)
    assert tuple(picture[strip + 8 * SCALE, 2 * (tile + gap) + 8 * SCALE]) == BOX_COLOUR
    assert (picture[:, tile:tile + gap] == 255).all()  # white gap between panels
    # the source panel shows the record's sample (index 2), enlarged
    source = (dataset[2]["image"].permute(1, 2, 0) * 255).round().byte().numpy()
    assert (picture[strip + SCALE * 15, 0] == source[15, 0]).all()


# ---------------------------------------------------------------------------- the numbers
@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return written_report(tmp_path_factory.mktemp("report") / "run")


@torch.no_grad()
def test_the_shown_contributions_and_the_rest_add_up_to_the_models_logit(report):
    run, _ = report
    images = torch.stack([build_dataset(run.config, "test", augment=False)[i]["image"]
                          for i in range(4)])
    output = run.model(images)
    weights = class_weights(run.model)
    for n in range(4):
        for k in range(weights.shape[0]):
            explained = decompose_logit(output.similarities[n], weights, output.logits[n, k],
                                        k, top_k=2)
            shown = [row["contribution"] for row in explained["prototypes"]]
            assert sum(shown) + explained["rest"] == pytest.approx(
                float(output.logits[n, k]), rel=1e-5, abs=1e-5)
            assert shown == sorted(shown, reverse=True)
            ids = [row["prototype"] for row in explained["prototypes"]]
            others = [p for p in range(weights.shape[1]) if p not in ids]
            assert explained["rest"] == pytest.approx(float(
                (output.similarities[n, others] * weights[k, others]).sum()), abs=1e-5)
            for row in explained["prototypes"]:
                assert row["contribution"] == pytest.approx(row["similarity"] * row["weight"])
    everything = decompose_logit(output.similarities[0], weights, output.logits[0, 0], 0, 99)
    assert everything["rest"] == 0.0 and len(everything["prototypes"]) == weights.shape[1]


def test_the_shared_upsampling_gives_the_maps_and_boxes_of_localize(report):
    run, _ = report
    test_set = build_dataset(run.config, "test", augment=False)
    pairs = [(i, p) for i in (0, 3, 5) for p in (0, 2, 5)] + [(7, 1)]
    localizer = Localizer(run.model, {"upsample": {"percentile": 90.0}, "centre": {}},
                          batch_size=4, device=torch.device("cpu"), progress=False)
    found = {key: maps for key, _, maps in localizer.run(pairs, test_set.__getitem__, "")}
    assert sorted(found) == sorted(pairs)
    images = torch.stack([test_set[i]["image"] for i, _ in pairs])
    ids = torch.tensor([p for _, p in pairs])
    expected = localize(run.model, images, ids, method="upsample", percentile=90.0)
    for b, key in enumerate(pairs):
        heatmap, box = found[key]["upsample"]
        assert torch.allclose(heatmap, expected.maps[b], atol=1e-5)
        assert box == expected.boxes[b].tolist()
    assert localizer.pairs == {"upsample": len(pairs), "centre": len(pairs)}


def test_the_page_rounds_the_rest_so_that_the_printed_column_adds_up():
    explanation = {"logit": 1.0004, "rest": 0.3331,
                   "prototypes": [{"contribution": 0.3334}, {"contribution": 0.3339}]}
    # printed 0.333 + 0.334 + 0.333 = 1.000, the printed logit
    assert shown_rest(explanation) == "0.333"
    assert shown_rest({"logit": -0.2, "prototypes": [{"contribution": 0.5}]}) == "-0.700"


def _test_pass(confidence, correct, labels) -> Predictions:
    count = len(labels)
    return Predictions(logits=torch.zeros(count, 3), labels=torch.tensor(labels),
                    predicted=torch.zeros(count, dtype=torch.long),
                    confidence=torch.tensor(confidence), correct=torch.tensor(correct),
                    top_evidence=torch.zeros(count, dtype=torch.long), multi_label=False)


def test_informative_test_images_are_the_extremes_mistakes_and_every_class():
    test = _test_pass(confidence=[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.95],
                      correct=[True, False, True, True, False, True, True, True],
                      labels=[0, 0, 1, 1, 2, 2, 2, 1])
    chosen = choose_test_images(test, 8)
    # the extremes and the worst mistake; per class (0, 1, 2) its most confident correct
    # image (0, 7 already taken, 5), its most confident mistake (4), its least confident
    # correct one (3); image 2, neither extreme nor a mistake, is left out
    assert [i for i, _ in chosen] == [7, 6, 1, 0, 5, 4, 3]
    assert chosen[:3] == [(7, "most confident in the test set"),
                          (6, "least confident in the test set"),
                          (1, "most confident mistake in the test set")]
    assert dict(chosen)[4] == "most confident mistake of its class"
    assert dict(chosen)[3] == "least confident correct of its class"
    assert [i for i, _ in choose_test_images(test, 2)] == [7, 6]
    assert choose_test_images(test, 0) == []


def test_the_region_on_the_object_comes_from_the_mask_or_the_findings_boxes():
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[:5, :5] = True
    heatmap = torch.zeros(10, 10)
    heatmap[3:5, 4:9] = 1.0  # 10 pixels, the top 10 %: two of them on the object
    assert region_on_object(heatmap, mask, percentile=90) == pytest.approx(0.2)
    assert region_on_object(heatmap, torch.ones(10, 10, dtype=torch.bool)) == 1.0
    item = {"image": torch.zeros(3, 8, 8), "boxes": torch.tensor([[0.0, 2, 0, 2], [4, 8, 4, 8]]),
            "box_labels": torch.tensor([1, 3])}
    finding = ground_truth_mask(item, 3)
    assert finding.sum() == 16 and finding[4:, 4:].all()
    assert ground_truth_mask(item, 0) is None
    assert ground_truth_mask({"image": item["image"]}, 0) is None


def test_the_benchmark_table_marks_directions_and_the_best_method():
    rows = benchmark_rows({"upsample": {"relevance": 0.5, "deletion": 0.3, "pairs": 4.0},
                           "hdm": {"relevance": 0.7, "deletion": 0.4, "pairs": 4.0}})
    assert [(r["metric"], r["direction"]) for r in rows] == [
        ("relevance", "↑"), ("deletion", "↓"), ("pairs", "")]
    assert [[c["best"] for c in r["cells"]] for r in rows] == [
        [False, True], [True, False], [False, False]]
    assert rows[0]["cells"][1]["text"] == "0.700"


# ---------------------------------------------------------------------------- the site
def test_the_site_has_an_index_a_page_per_class_and_per_local_explanation(report):
    run, site = report
    data = json.loads((site / "data.json").read_text())
    assert sorted(p.name for p in site.iterdir()) == ["assets", "classes", "data.json", "img",
                                                      "index.html", "local"]
    assert sorted(p.name for p in (site / "classes").iterdir()) == [
        "c000.html", "c001.html", "c002.html"]
    assert len(data["local"]) == 6
    assert sorted(p.name for p in (site / "local").iterdir()) == sorted(
        f"{entry['id']}.html" for entry in data["local"])
    assert data["classes"] == build_dataset(run.config, "test", augment=False).classes
    assert data["methods"] == METHODS and set(data["benchmark"]) == set(METHODS)
    assert broken_links(site) == []
    charts = sorted(p.name for p in (site / "img" / "charts").iterdir())
    assert charts == ["confusion.svg", "cost.svg", "per_class.svg", "quality.svg"]
    assert all("<svg" in (site / "img" / "charts" / name).read_text() for name in charts)
    index = (site / "index.html").read_text()
    assert "cdn" not in index.lower() and "http://" not in index and "https://" not in index
    for name in build_dataset(run.config, "test", augment=False).classes:
        assert f'data-name="{name.lower()}"' in index  # the search reads these


def test_data_json_holds_the_overview_and_each_prototypes_global_entry(report):
    run, site = report
    data = json.loads((site / "data.json").read_text())
    test_set = build_dataset(run.config, "test", augment=False)
    with torch.no_grad():
        logits = run.model(torch.stack([test_set[i]["image"] for i in range(len(test_set))])
                           ).logits
    overview = data["overview"]
    assert overview["test_samples"] == len(test_set) == 12
    labels = torch.tensor([test_set[i]["label"] for i in range(len(test_set))])
    assert overview["test_accuracy"] == pytest.approx(
        float((logits.argmax(dim=1) == labels).float().mean()))
    assert sum(map(sum, overview["confusion_matrix"])) == 12
    weights = class_weights(run.model)
    assert [p["prototype"] for p in data["prototypes"]] == list(range(6))
    assert sum(p["top_evidence"]["count"] for p in data["prototypes"]) == 12
    for entry in data["prototypes"]:
        p = entry["prototype"]
        record = run.records[p]
        assert entry["class_index"] == record.class_index == p // 2
        assert entry["weights"] == pytest.approx(weights[:, p].tolist())
        assert entry["source"]["sample_index"] == record.sample_index
        assert set(entry["localization"]) == set(METHODS)
        assert len(entry["nearest"]) == 3
        distances = [n["distance"] for n in entry["nearest"]]
        assert distances == sorted(distances)
        for found in [entry["localization"], *[n["localization"] for n in entry["nearest"]]]:
            for method in METHODS:
                assert (site / found[method]["tile"]).is_file()
        assert 0.0 <= entry["localization"]["upsample"]["object_share"] <= 1.0
        assert entry["page"] == f"classes/c{p // 2:03d}.html#p{p:04d}"
        for page in entry["local"]:
            assert f">p{p}</a>" in (site / page).read_text()


@torch.no_grad()
def test_each_local_explanation_in_data_json_adds_up_to_the_models_logit(report):
    run, site = report
    data = json.loads((site / "data.json").read_text())
    test_set = build_dataset(run.config, "test", augment=False)
    weights = class_weights(run.model)
    reasons = {entry["why"] for entry in data["local"]}
    assert {"most confident in the test set", "least confident in the test set"} <= reasons
    for entry in data["local"]:
        item = test_set[entry["sample_index"]]
        output = run.model(item["image"][None])
        # computed in a batch of other images: float32 kernels may round differently
        assert entry["logits"] == pytest.approx(output.logits[0].tolist(), rel=1e-4)
        assert entry["true_classes"] == [data["classes"][item["label"]]]
        predicted = int(output.logits[0].argmax())
        assert entry["predicted_class"] == data["classes"][predicted]
        assert entry["correct"] == (predicted == item["label"])
        roles = [e["role"] for e in entry["explanations"]]
        assert roles == (["predicted"] if entry["correct"] else ["predicted", "true"])
        for explanation in entry["explanations"]:
            k = explanation["class"]
            assert explanation["logit"] == entry["logits"][k]
            shown = explanation["prototypes"]
            assert len(shown) == 3 and explanation["others"] == 3
            assert sum(row["contribution"] for row in shown) + explanation["rest"] == \
                pytest.approx(explanation["logit"], rel=1e-5, abs=1e-5)
            for row in shown:
                p = row["prototype"]
                assert row["similarity"] == pytest.approx(float(output.similarities[0, p]),
                                                          rel=1e-4)
                assert row["weight"] == pytest.approx(float(weights[k, p]))
                assert set(row["localization"]) == set(METHODS)
        if not entry["correct"]:
            assert entry["explanations"][1]["class_name"] == entry["true_classes"][0]


def test_prototypes_to_look_at_are_flagged_on_the_index_and_their_page(tmp_path):
    run = report_run(tmp_path / "run", benchmark=False)
    with torch.no_grad():
        run.model.prototype_vectors[3] = run.model.prototype_vectors[2]  # a duplicate
        run.model.last_layer.weight[2, 5] = 0.0  # no weight to its own class
    summary = write_report(run, methods=["upsample"], test_images=0, nearest=0,
                           progress=False)
    data = json.loads((summary.path.parent / "data.json").read_text())
    kinds = {p["prototype"]: {flag["kind"] for flag in p["flags"]} for p in data["prototypes"]}
    assert "duplicate" in kinds[2] and "duplicate" in kinds[3]
    assert "near_zero_weight" in kinds[5] and "near_zero_weight" not in kinds[4]
    assert [2, 3] in data["duplicates"]
    assert data["duplicates"] == duplicate_prototypes(run.model, run.records)
    for p in data["prototypes"]:
        share = p["localization"]["upsample"]["object_share"]
        assert ("outside_object" in kinds[p["prototype"]]) == (share < 0.5)
    index = (summary.path).read_text()
    assert 'href="classes/c001.html#p0003"' in index and "duplicate of p2" in index
    assert "near-zero weight to its own class" in (
        summary.path.parent / "classes" / "c002.html").read_text()
    assert data["local"] == [] and not (summary.path.parent / "local").exists()


def test_an_earlier_report_is_replaced_and_another_folder_is_refused(tmp_path):
    run = report_run(tmp_path / "run", benchmark=False)
    site = tmp_path / "run" / "report"
    left = tmp_path / "run" / ".report.partial-999999999"  # of a writer killed outright
    (left / "img").mkdir(parents=True)
    write_report(run, methods=["upsample"], test_images=4, nearest=1, progress=False)
    assert not left.exists()
    assert len(list((site / "local").iterdir())) == 4
    write_report(run, methods=["upsample"], test_images=2, nearest=1, progress=False)
    assert len(list((site / "local").iterdir())) == 2  # nothing left from the first
    assert [p.name for p in tmp_path.joinpath("run").iterdir() if p.name.startswith(".")] == []
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not a protoexplain report"):
        write_report(run, other, methods=["upsample"], test_images=0, progress=False)
    assert (other / "mine.txt").read_text() == "keep"


def test_report_command_writes_the_site_with_the_named_methods(tmp_path, capsys):
    report_run(tmp_path / "run", benchmark=False)
    out = tmp_path / "site"
    assert main(["report", str(tmp_path / "run"), "--out", str(out), "--methods",
                 "upsample,random", "--test-images", "3", "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out / 'index.html'} (")
    assert main(["report", str(tmp_path / "run"), "--test-images", "0", "--no-progress"]) == 0
    assert (tmp_path / "run" / "report" / "index.html").is_file()
    assert not (tmp_path / "run" / "run.lock").exists()  # held while writing, then released
    data = json.loads((out / "data.json").read_text())
    assert data["methods"] == ["upsample", "random"] and len(data["local"]) == 3
    assert main(["report", str(tmp_path / "run"), "--methods", "upsampel",
                 "--no-progress"]) == 2
    assert "unknown localization method 'upsampel'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    assert "is not a protoexplain report" in capsys.readouterr().err


def test_explain_writes_the_local_view_as_html_beside_the_png(report, tmp_path):
    run, site = report
    image = tmp_path / "my photo.png"
    cv2.imwrite(str(image), (torch.rand(40, 40, 3) * 255).byte().numpy())
    loaded = load_run(run.path)
    out = tmp_path / "out"
    (result,) = explain_images(loaded, [image], out, top_k=2, methods=["upsample"])
    page = out / "my photo_explanation.html"
    assert result["page"] == str(page.resolve())
    assert (out / "my photo_explanation.png").is_file()
    assert sum(p["contribution"] for p in result["prototypes"]) + result["rest"] == \
        pytest.approx(result["logit"], rel=1e-5, abs=1e-5)
    assert all(p["contribution"] == pytest.approx(p["similarity"] * p["weight"], rel=1e-5)
               for p in result["prototypes"])
    assert json.loads((out / "explanations.json").read_text()) == [result]
    targets, _ = page_links(page)
    hrefs = [target for tag, target in targets if tag == "a"]
    p = result["prototypes"][0]["prototype"]
    assert os.path.relpath(site / f"classes/c{p // 2:03d}.html", out) + f"#p{p:04d}" in hrefs
    assert broken_links(out) == []
    assert "my photo.png" in page.read_text()


def test_explain_pages_of_images_with_the_same_name_are_distinct(report, tmp_path):
    run, _ = report
    paths = [tmp_path / "a" / "bird.png", tmp_path / "b" / "bird.png"]
    for shade, path in enumerate(paths):
        path.parent.mkdir()
        cv2.imwrite(str(path), (torch.full((24, 24, 3), 80.0 * (shade + 1))).byte().numpy())
    results = explain_images(load_run(run.path), paths, tmp_path / "out", top_k=1,
                             methods=["upsample"])
    assert [os.path.basename(r["page"]) for r in results] == [
        "bird-1_explanation.html", "bird-2_explanation.html"]
    sources = [[t for tag, t in page_links(tmp_path / "out" / os.path.basename(r["page"]))[0]
                if tag == "img"][0] for r in results]
    assert sources[0] != sources[1]  # each page shows its own image


def test_a_prototype_without_a_projection_record_has_an_entry_without_source(tmp_path):
    run = report_run(tmp_path / "run", benchmark=False)
    run.records = [r for r in run.records if r.prototype != 4]  # e.g. an imported model
    summary = write_report(run, methods=["upsample"], test_images=3, nearest=2,
                           progress=False)
    data = json.loads((summary.path.parent / "data.json").read_text())
    entry = data["prototypes"][4]
    assert entry["source"] is None and entry["localization"] == {}
    assert entry["class_index"] == 2 and len(entry["nearest"]) == 2
    assert "Not projected onto a training patch" in (
        summary.path.parent / "classes" / "c002.html").read_text()
    assert broken_links(summary.path.parent) == []


# ---------------------------------------------------------------------------- XProtoNet
@pytest.mark.slow
def test_an_xprotonet_report_shows_each_findings_occurrence_maps_and_boxes(tmp_path):
    run = pushed_xprotonet_run(tmp_path / "run")
    summary = write_report(run, methods=["upsample"], test_images=4, nearest=2,
                           progress=False)
    site = summary.path.parent
    data = json.loads((site / "data.json").read_text())
    assert data["multi_label"] and "test_auroc" in data["overview"]
    assert data["duplicates"] is None  # the duplicate test is ProtoPNet's
    pages = sorted((site / "classes").iterdir())
    assert len(pages) == 5
    with_boxes = 0
    for k, page in enumerate(pages):
        text = page.read_text()
        assert 'id="occurrence"' in text and "occurrence map" in text
        assert text.count('data-prototype="') == 2
        with_boxes += sum(bool(p["source"]["truth_boxes"]) for p in data["prototypes"]
                          if p["class_index"] == k)
    assert with_boxes > 0  # pushed onto positive images, which have the finding's boxes
    assert list((site / "img" / "o").iterdir())
    assert len(data["local"]) == 4
    for entry in data["local"]:
        for explanation in entry["explanations"]:
            total = sum(row["contribution"] for row in explanation["prototypes"])
            assert total + explanation["rest"] == pytest.approx(explanation["logit"], abs=1e-5)
    assert broken_links(site) == []
