"""protoexplain: prototype-based interpretable classifiers explained with learned saliency masks.

The application layer: configs, data sets, the command line, training runs, evaluation and
reports. It builds on :mod:`prototypes` (models, losses, projection) and :mod:`hdm` (the
learned-mask saliency engine).
"""

__version__ = "0.1.0"
