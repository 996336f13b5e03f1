"""A tiny guardian process that ties a child program's life to its parent's.

``python -m rtfd.procguard -- CMD ...`` runs CMD and waits. When the parent that started the guard
goes away for any reason — a clean exit, a crash or ``kill -9`` — the guard's stdin reaches EOF and
the guard stops CMD (SIGTERM, then SIGKILL after a grace period). SIGTERM/SIGINT to the guard do
the same. This is how the embedded broker never outlives rtfd, whichever thread started it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading

GRACE_S = 25.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rtfd-procguard")
    parser.add_argument("--grace", type=float, default=GRACE_S)
    parser.add_argument("--log", default=None, help="file for the child's stdout/stderr")
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
    if not cmd:
        parser.error("no command")
    out = open(args.log, "ab") if args.log else subprocess.DEVNULL  # noqa: SIM115
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    stopping = threading.Event()

    def stop(*_: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(args.grace)
            except subprocess.TimeoutExpired:
                child.kill()

    def watch_parent() -> None:
        # Blocks until the parent closes its end of the pipe or dies.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop()

    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=stop, daemon=True).start())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=watch_parent, daemon=True).start()
    code = child.wait()
    stopping.set()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
