"""The human-readable side of a run directory: one PNG per prototype, and the report, an
offline HTML site with global and local explanations (:func:`write_report`)."""

from protoexplain.report.build import (
    DEFAULT_NEAREST,
    DEFAULT_TEST_IMAGES,
    DEFAULT_TOP,
    REPORT_DIR,
    ReportSummary,
    write_explanation_pages,
    write_report,
)
from protoexplain.report.pictures import PICTURE_DIR, write_prototype_pictures

__all__ = ["DEFAULT_NEAREST", "DEFAULT_TEST_IMAGES", "DEFAULT_TOP", "PICTURE_DIR", "REPORT_DIR",
           "ReportSummary", "write_explanation_pages", "write_prototype_pictures",
           "write_report"]
