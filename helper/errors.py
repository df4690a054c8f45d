"""One base class for the errors the platform reports to a person in one line.

Library code raises these and never exits the process; `run_cli` (the `__main__` of each
command-line module) turns them into a message on stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

EXIT_ERROR = 2


class PlatformError(Exception):
    """A problem the message fully explains (what is wrong and what to do); no traceback."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a CLI's `main` and exit with its code; a PlatformError becomes one stderr line."""
    try:
        code = main()
    except PlatformError as exc:
        print(exc, file=sys.stderr)
        code = EXIT_ERROR
    sys.exit(code or 0)
