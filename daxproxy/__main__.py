"""``python -m daxproxy``: the same as the ``daxproxy`` console script."""

import sys

from daxproxy.edge.cli import main

sys.exit(main())
