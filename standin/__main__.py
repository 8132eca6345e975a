"""``python -m standin``: see standin/server.py."""

import sys

from standin.server import main

sys.exit(main(sys.argv[1:]))
