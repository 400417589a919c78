"""Inopsio kernel: a multi-tenant Litestar app that plugins extend through pluggy hooks."""

import pluggy

__version__ = "0.1.0"

#: Decorate hook implementations in a plugin with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker("inopsio")

__all__ = ["__version__", "hookimpl"]
