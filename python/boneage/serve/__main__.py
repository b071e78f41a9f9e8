"""``python -m boneage.serve``: runs :func:`boneage.serve.cli.main`."""

import sys

from boneage.serve.cli import main

if __name__ == "__main__":
    sys.exit(main())
