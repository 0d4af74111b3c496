"""The malloc-tuning study's own logic: what each child process sees, and the summary."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "research"), str(ROOT / "benchmarks")]
import malloc_tuning  # noqa: E402

SHOW_SWITCH = ("import os, sys; "
               "sys.exit(0 if os.environ['PROTOEXPLAIN_MALLOC_TUNING'] == sys.argv[1] "
               "and 'MALLOC_TOP_PAD_' not in os.environ else 3)")


@pytest.mark.parametrize(("tuned", "switch"), [(True, "1"), (False, "0")])
def test_each_child_gets_the_switch_and_none_of_glibcs_own_variables(tuned, switch, monkeypatch):
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    usage = malloc_tuning.measure([sys.executable, "-c", SHOW_SWITCH, switch], tuned=tuned)
    assert set(usage) == {"wall_s", "user_s", "sys_s", "minor_faults", "max_rss_mib"}
    assert usage["wall_s"] > 0 and usage["minor_faults"] > 0 and usage["max_rss_mib"] > 1


def test_summary_is_the_median_per_mode_and_the_ratio_of_medians():
    def usage(wall):
        return {"wall_s": wall, "sys_s": wall / 10}

    runs = {"off": [usage(10.0), usage(30.0), usage(12.0)],
            "on": [usage(6.0), usage(9.0), usage(8.0)]}
    summary = malloc_tuning.summarise(runs)
    assert summary["off"] == pytest.approx({"wall_s": 12.0, "sys_s": 1.2})
    assert summary["on"] == pytest.approx({"wall_s": 8.0, "sys_s": 0.8})
    assert summary["on/off"] == pytest.approx({"wall_s": 8 / 12, "sys_s": 8 / 12})


def test_unknown_workload_is_refused_before_any_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        malloc_tuning.main(["--workloads", "mini,train", "--out", str(tmp_path / "x")])
    assert stop.value.code == 2
    assert "unknown workload 'train'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
