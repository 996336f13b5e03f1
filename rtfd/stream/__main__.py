"""``python -m rtfd.stream [options]`` is ``rtfd stream [options]`` (used by the crash tests)."""

import sys

from rtfd.cli import main

sys.exit(main(["stream", *sys.argv[1:]]))
