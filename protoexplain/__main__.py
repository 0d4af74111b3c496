"""``python -m protoexplain`` (and ``torchrun -m protoexplain``): the command line."""

import sys

from protoexplain.cli import main

sys.exit(main())
