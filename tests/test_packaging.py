"""The package as users install it: the listed packages, and a wheel that runs anywhere.

The wheel test builds the wheel from this checkout, installs it (without dependencies) into
a fresh virtual environment that sees the already-installed torch and the other
dependencies through a ``.pth`` file, and runs the command line from a folder outside the
checkout, so that nothing can come from the source tree.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hdm", "prototypes", "protoexplain")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_lists_every_package_on_disk():
    on_disk = {".".join(path.parent.relative_to(ROOT).parts)
               for name in PACKAGES for path in (ROOT / name).rglob("__init__.py")}
    settings = _pyproject()["tool"]["setuptools"]
    assert set(settings["packages"]) == on_disk | {"protoexplain.configs"}
    assert settings["package-dir"] == {"protoexplain.configs": "configs"}


def test_every_package_is_typed_and_the_version_has_one_home():
    assert all((ROOT / name / "py.typed").is_file() for name in PACKAGES)
    project = _pyproject()["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT")


def _run(command: list, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """A virtual environment with the wheel installed; returns its bin folder."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # setuptools writes build/ beside the sources: not in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"))
    build = _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps",
                  "--no-build-isolation", "--wheel-dir", str(work / "dist")], cwd=work)
    assert "Deprecat" not in build.stdout + build.stderr, build.stderr
    (wheel,) = (work / "dist").glob("protoexplain-*.whl")
    env = work / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], cwd=work)
    python = env / "bin" / "python"
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=work).stdout.strip()
    # The dependencies (torch, numpy, ...) come from the environment running the tests.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", str(wheel)], cwd=work)
    return env / "bin"


@pytest.mark.slow
def test_the_wheel_holds_the_packages_configs_and_license(installed_wheel):
    python = installed_wheel / "python"
    code = ("import importlib.resources as r, protoexplain, prototypes, hdm;"
            "print(protoexplain.__file__);"
            "print(sorted(p.name for p in r.files('protoexplain.configs').iterdir()"
            " if p.name.endswith('.yaml')));"
            "print(sorted(p.name for p in r.files('protoexplain.configs').joinpath('studies')"
            ".iterdir()));"
            "print(sorted(p.name for p in r.files('protoexplain.study').joinpath('static')"
            ".iterdir()))")
    out = _run([python, "-c", code], cwd=installed_wheel).stdout.splitlines()
    assert Path(out[0]).is_relative_to(installed_wheel.parent)
    assert out[1] == str(sorted(p.name for p in (ROOT / "configs").glob("*.yaml")))
    assert out[2] == str(sorted(p.name for p in (ROOT / "configs" / "studies").glob("*.yaml")))
    assert out[3] == "['study.css', 'study.js']"  # the study page's package data


@pytest.mark.slow
def test_the_installed_command_trains_a_tiny_run_outside_the_checkout(installed_wheel,
                                                                       tmp_path):
    command = installed_wheel / "protoexplain"
    env = {**os.environ, "PYTHONPATH": ""}
    help_text = _run([command, "demo", "--help"], cwd=tmp_path, env=env).stdout
    assert "synthetic_protopnet.yaml" in help_text
    tiny = ["device=cpu", "data.batch_size=8", "data.eval_batch_size=16",
            "data.options={image_size: 32, num_samples: {train: 24, val: 8, test: 8}}",
            "training.pretrain_epochs=0", "localization.push_method=upsample",
            "model.backbone=small_cnn", "model.backbone_options={width: 4}",
            "model.prototypes_per_class=1", "model.prototype_dim=8", "training.epochs=3",
            "training.warm_epochs=1", "training.push_start=2", "training.push_every=2",
            "training.last_layer_epochs=1", "localization.evaluation_methods=[upsample]",
            "localization.images_per_prototype=1"]
    sets = [item for value in tiny for item in ("--set", value)]
    _run([command, "train", "synthetic_protopnet", "--out", "run", "--no-progress", *sets],
         cwd=tmp_path, env=env)
    run = tmp_path / "run"
    for name in ("config.yaml", "checkpoint.pt", "metrics.json", "projection.json",
                 "benchmark.json", "report/index.html", "report/assets/report.css"):
        assert (run / name).is_file(), name  # the report's templates and CSS are package data
    shown = _run([command, "show-data", "--count", "4", "--out", "sheet.png"],
                 cwd=tmp_path, env=env)
    assert (tmp_path / "sheet.png").stat().st_size > 1000, shown.stdout
