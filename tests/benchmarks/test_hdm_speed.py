"""The speed benchmark puts peers beside our methods and says when a peer is missing."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import hdm_speed  # noqa: E402
import peers  # noqa: E402


def _row(method, seconds, passes, batch=4):
    return {"model": "small", "method": method, "batch": batch, "seconds_per_sample": seconds,
            "ratio": 1.0, "passes": [{"shape": [batch, 3, 8, 8], "gradient": True,
                                      "count": passes}]}


def test_speed_up_over_each_peer_is_computed_per_variant_at_the_passes_made():
    rows = [_row("MDM 1 grid", 0.01, 10), _row("MDM 1 grid [bf16]", 0.005, 10),
            _row("TorchRay EP", 0.04, 40, batch=1), _row("MDM", 0.02, 20)]
    comparisons = hdm_speed.peer_comparisons(rows)
    assert [(c["ours"], c["peer"]) for c in comparisons] == [
        ("MDM 1 grid", "TorchRay EP"), ("MDM 1 grid [bf16]", "TorchRay EP")]
    assert comparisons[0]["speedup_over_peer"] == pytest.approx(4.0)
    assert comparisons[1]["speedup_over_peer"] == pytest.approx(8.0)
    assert comparisons[0]["passes_per_sample_ours"] == 10
    assert comparisons[0]["passes_per_sample_peer"] == 40


def test_a_peer_that_is_not_installed_is_named_with_its_install_command(monkeypatch, capsys):
    monkeypatch.setitem(peers.PEER_PACKAGES, "TorchRay EP",
                        ("no_such_module_torchray", "pip install torchray"))
    assert peers.missing_peers() == {"TorchRay EP": "pip install torchray"}
    record = hdm_speed.main(["--models", "small", "--size", "16", "--batch", "2", "--steps",
                             "1", "--alone", "1", "--methods", "GradCAM,TorchRay EP",
                             "--malloc-tuning", "off", "--out", "/dev/null"])
    assert "peer TorchRay EP is not installed (pip install torchray" in capsys.readouterr().out
    assert [row["method"] for row in record["results"]] == ["GradCAM"]
    assert record["peers_missing"] == {"TorchRay EP": "pip install torchray"}


@pytest.mark.slow
def test_peers_run_side_by_side_with_our_methods(tmp_path):
    pytest.importorskip("torchray")
    pytest.importorskip("pytorch_grad_cam")
    record = hdm_speed.main(["--models", "small", "--size", "32", "--batch", "2", "--steps",
                             "2", "--alone", "1", "--methods",
                             "MDM 1 grid,TorchRay EP,GradCAM,pytorch-grad-cam",
                             "--malloc-tuning", "off", "--out", str(tmp_path / "speed.json")])
    rows = {row["method"]: row for row in record["results"]}
    assert set(rows) == {"MDM 1 grid", "TorchRay EP", "GradCAM", "pytorch-grad-cam"}
    # equal gradient passes per image: one per step for both
    def gradient_images(row):
        return sum(p["count"] * p["shape"][0] for p in row["passes"] if p["gradient"])

    assert gradient_images(rows["MDM 1 grid"]) == gradient_images(rows["TorchRay EP"]) == 2 * 2
    assert {c["peer"] for c in record["peer_comparisons"]} == {"TorchRay EP", "pytorch-grad-cam"}
    assert all(c["speedup_over_peer"] > 0 for c in record["peer_comparisons"])
