"""glibc malloc tuning: when it applies, and that freed memory is then reused without faults."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from protoexplain import cli, malloc_tuning
from protoexplain.config_schema import ConfigError
from protoexplain.malloc_tuning import SETTINGS, tune_malloc

on_glibc = pytest.mark.skipif(malloc_tuning._glibc() is None, reason="needs Linux with glibc")

# Three 20 MiB blocks taken, written and freed, ten times over; prints the minor page faults
# of the last eight rounds. With glibc's defaults the first round's frees raise the trim
# threshold to about 40 MiB only, so the 60 MiB freed at the heap's top goes back to the
# kernel every round and is faulted in again.
FAULT_PROBE = textwrap.dedent("""
    import ctypes, resource, sys
    from protoexplain.malloc_tuning import tune_malloc
    if sys.argv[1] == "tuned":
        assert tune_malloc(), "tuning was not applied"
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 20 << 20
    def one_round():
        blocks = [libc.malloc(size) for _ in range(3)]
        for block in blocks:
            ctypes.memset(block, 1, size)
        for block in blocks:
            libc.free(block)
    one_round(); one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):
        one_round()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def _probe_faults(mode: str) -> int:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", FAULT_PROBE, mode], env=env, check=True,
                            capture_output=True, text=True)
    return int(result.stdout.strip())


@on_glibc
def test_tuning_applies_every_setting_on_glibc():
    assert tune_malloc({}) == {name: size for name, (_, size) in SETTINGS.items()}


@on_glibc
def test_freed_memory_is_reused_without_page_faults_once_tuned():
    default, tuned = _probe_faults("default"), _probe_faults("tuned")
    pages_per_round = 3 * (20 << 20) // 4096
    assert default > 4 * pages_per_round  # the memory went back to the kernel, round after round
    assert tuned < pages_per_round // 10


@pytest.mark.parametrize("environ", [
    {"PROTOEXPLAIN_MALLOC_TUNING": "0"},
    {"MALLOC_TRIM_THRESHOLD_": "131072"},
    {"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"},
])
def test_opt_out_and_user_settings_leave_glibc_alone(environ, monkeypatch):
    monkeypatch.setattr(malloc_tuning, "_glibc", lambda: pytest.fail("must not reach mallopt"))
    assert tune_malloc(environ) == {}


def test_nothing_changes_off_linux(monkeypatch):
    monkeypatch.setattr(malloc_tuning.sys, "platform", "darwin")
    assert tune_malloc({}) == {}


def test_the_command_line_tunes_before_any_command(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "tune_malloc", lambda: calls.append(True))
    assert cli.main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert calls == [True]


@on_glibc
def test_verbose_logging_shows_what_the_tuning_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PROTOEXPLAIN_MALLOC_TUNING", "1")
    for name in malloc_tuning.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert cli.main(["train", str(tmp_path / "missing.yaml"), "--verbose"]) == 2
    logged = capsys.readouterr().err
    assert "malloc tuning: {" in logged and all(name in logged for name in SETTINGS)


@pytest.mark.parametrize("switch", ["off", "false", "", "2"])
def test_an_unclear_switch_is_an_error_naming_the_variable(switch):
    with pytest.raises(ConfigError, match=r"PROTOEXPLAIN_MALLOC_TUNING must be 0 .* or 1 .*, "
                                          rf"got '{switch}'"):
        tune_malloc({"PROTOEXPLAIN_MALLOC_TUNING": switch})


def test_the_command_line_stops_on_an_unclear_switch_before_any_work(monkeypatch, tmp_path,
                                                                     capsys):
    monkeypatch.setenv("PROTOEXPLAIN_MALLOC_TUNING", "off")
    out = tmp_path / "run"
    assert cli.main(["demo", "--out", str(out)]) == 2
    assert "PROTOEXPLAIN_MALLOC_TUNING must be 0" in capsys.readouterr().err
    assert not out.exists()
