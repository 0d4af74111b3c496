"""Every Python code block of README.md runs, in order, as a reader would paste them.

The blocks run in one namespace, in a folder holding a tiny trained run at ``runs/demo``
(the run the README's ``protoexplain demo`` writes), so the example that localizes a
prototype of a trained run works on a run that takes seconds instead of minutes to train.
"""

import re
from pathlib import Path

import pytest

from protoexplain.cli import main
from tests.protoexplain.tiny_runs import tiny_run

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[str]:
    return FENCE.findall(README.read_text())


def test_the_readme_has_python_examples_and_stays_short():
    assert len(python_blocks()) >= 2
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.slow
def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sets = tiny_run(epochs=3, push_every=2, prototypes_per_class=1) + [
        "data.options={num_samples: {train: 48, val: 16, test: 16}}",
        "training.pretrain_epochs=0", "localization.push_method=upsample",
        "localization.evaluation_methods=[upsample]", "localization.images_per_prototype=1"]
    assert main(["train", "synthetic_protopnet", "--out", "runs/demo", "--no-progress",
                 *[item for value in sets for item in ("--set", value)]]) == 0
    namespace: dict = {}
    for number, block in enumerate(python_blocks(), start=1):
        code = compile(block, f"README.md python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 - the README's own examples
