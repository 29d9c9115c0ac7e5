"""``python -m rsedit_core``: the ``rsedit`` command line (also under ``accelerate launch -m``)."""

import sys

from .cli import main

sys.exit(main())
