"""The ``pymortem`` command: ``python -m pymortem ARGS`` or the ``pymortem``
script the wheel installs. It runs the Rust binary's command line itself
(same arguments, output and exit codes)."""

from __future__ import annotations

import signal
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``pymortem`` with ``argv`` (default: ``sys.argv[1:]``) and return
    its exit code: 0 success, 1 findings, 2 error, 3 incomplete."""
    from ._native import run_cli

    args = list(sys.argv[1:] if argv is None else argv)
    # Ctrl-C stops the command as it stops the binary: Python's handler
    # would only set a flag that nothing reads while Rust runs.
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    except ValueError:  # not the main thread
        pass
    # The command writes to the file descriptors itself.
    sys.stdout.flush()
    sys.stderr.flush()
    return run_cli(["pymortem", *args])


if __name__ == "__main__":
    sys.exit(main())
