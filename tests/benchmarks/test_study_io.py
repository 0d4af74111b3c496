"""What the benchmark scripts share: running a child command and comparing runs' results."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import study_io  # noqa: E402


def test_a_failing_workload_stops_the_study_with_its_error():
    failing = [sys.executable, "-c", "raise SystemExit('no run here')"]
    with pytest.raises(RuntimeError, match="no run here"):
        study_io.run_child(failing, {})


def test_results_are_compared_without_timings(tmp_path):
    def write_run(name, accuracy, seconds):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.json").write_text(json.dumps(
            {"test_accuracy": accuracy, "training_seconds": seconds, "device": "cpu",
             "test_per_class_accuracy": [accuracy, 1.0]}))
        (run / "benchmark.json").write_text(json.dumps(
            {"hdm": {"consistency": 0.5, "seconds_per_pair": seconds}}))
        return study_io.result_values(run)

    first, second = write_run("a", 0.9, 10.0), write_run("b", 0.9, 99.0)
    assert first == {"metrics.json/test_accuracy": 0.9,
                     "metrics.json/test_per_class_accuracy/0": 0.9,
                     "metrics.json/test_per_class_accuracy/1": 1.0,
                     "benchmark.json/hdm/consistency": 0.5}
    assert study_io.largest_difference([first, second]) == 0.0
    assert study_io.largest_difference([first, write_run("c", 0.85, 1.0)]) == \
        pytest.approx(0.05)


def test_a_chatty_workload_does_not_block_on_its_log():
    chatty = [sys.executable, "-c", "import sys; sys.stderr.write('log line\\n' * 50_000)"]
    usage = study_io.run_child(chatty, {})
    assert set(usage) == {"wall_s", "user_s", "sys_s", "minor_faults", "max_rss_mib"}
    assert 0.0 < usage["wall_s"] < 60.0  # finished: 450 kB of log did not fill a pipe
    assert usage["max_rss_mib"] > 1.0 and usage["minor_faults"] > 0


def test_a_protoexplain_command_line_runs_the_cli_quietly_with_its_overrides(tmp_path):
    command = study_io.protoexplain_command("train", "c.yaml", "--out", "run",
                                            overrides=["seed=1", "device=cpu"])
    assert command == [sys.executable, "-m", "protoexplain.cli", "train", "c.yaml", "--out",
                       "run", "--no-progress", "--set", "seed=1", "--set", "device=cpu"]
    assert study_io.protoexplain_command("demo")[-2:] == ["demo", "--no-progress"]
