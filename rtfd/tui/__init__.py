"""The Textual console of rtfd: the only package that imports textual.

``rtfd.cli.tui`` registers ``rtfd tui`` and imports nothing heavy; ``rtfd.tui.app`` holds the
application. Everything the app learns from the running appliance arrives as Textual messages
posted from background threads (supervisor events, the alert consumer, pollers).
"""
