"""Case-based-reasoning user studies: blinded, counterbalanced study material from a run
(``protoexplain study design``, :func:`design_study`) and the analysis of the participants'
answers (``protoexplain study analyze``, :func:`analyze_study`)."""

from protoexplain.study.analysis import analyze_study
from protoexplain.study.config import StudyConfig, load_study_config
from protoexplain.study.design import design_study

__all__ = ["StudyConfig", "analyze_study", "design_study", "load_study_config"]
