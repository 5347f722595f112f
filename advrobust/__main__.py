"""``python -m advrobust``: the same command line as the ``advrobust`` console script."""

import sys

from advrobust.study._cli import main

if __name__ == "__main__":
    sys.exit(main())
