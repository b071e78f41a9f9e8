"""``python -m boneage COMMAND``: the same as the ``boneage`` console script."""

import sys

from boneage.cli import main

sys.exit(main())
