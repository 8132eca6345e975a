"""``python -m tfsload`` is the ``tfsload`` command."""

import sys

from tfsload.cli import main

sys.exit(main())
