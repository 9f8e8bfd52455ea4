"""``python -m unike_interp`` is the ``unike`` command."""

import sys

from .cli import main

sys.exit(main())
