"""The web application (the top floor): app factory, REST API, CLI, static web — and, in
:mod:`quart_app.core`, the foundation every package builds on.

Kept empty on purpose: the worker imports :mod:`quart_app.core` and must not pull in
Quart through this package's ``__init__``. The app factory is
:func:`quart_app.app.create_app`.
"""
