"""Studies shared by the study tests (each takes a few seconds to design): a between-subject
and a within-subject study of the tiny report run."""

from pathlib import Path

import pytest

from protoexplain.study.config import TrialCounts
from tests.protoexplain.study.runs import small_study


@pytest.fixture(scope="session")
def between_study(tmp_path_factory) -> Path:
    return small_study(tmp_path_factory.mktemp("between_study"))


@pytest.fixture(scope="session")
def within_study(tmp_path_factory) -> Path:
    return small_study(tmp_path_factory.mktemp("within_study"), design="within",
                       similarity_mode="comparative",
                       trials=TrialCounts(distinction=2, agreement=4, similarity=2))
