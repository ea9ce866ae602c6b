"""`python -m azpytest` is the `azpytest` command."""

from __future__ import annotations

import sys

from azpytest.cli import main

if __name__ == "__main__":
    sys.exit(main())
