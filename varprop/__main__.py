"""``python -m varprop``: the same as the ``varprop`` command."""

import sys

from .cli import main

sys.exit(main())
