"""``python -m rtfd.cli [options] COMMAND ...`` is ``rtfd [options] COMMAND ...``: the same entry,
for a child process started with this interpreter (the crash tests, the benchmarks)."""

import sys

from rtfd.cli import main

sys.exit(main())
