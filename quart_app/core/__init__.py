"""The foundation every package may import: settings, metrics, logging, tokens, origins,
account creation.

It imports nothing above it (only :mod:`models` and third-party libraries, never Quart),
so the worker (``tasks``) and the socket layer use it without pulling in the web app.
``lint-imports`` (contracts in ``setup.cfg``) keeps it that way.
"""
