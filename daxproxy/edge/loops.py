"""The event loop the proxy runs on, from the ``event_loop`` setting.

``uvloop``: uvloop's loop (the ``fast`` extra; :class:`SettingError` naming the setting when
it is not installed, which the command line turns into exit code 2). ``asyncio``: asyncio's
own loop. ``auto``: uvloop where it is installed, else asyncio's. :func:`loop_factory` gives
the factory for :class:`asyncio.Runner` and the name of the loop chosen.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from daxproxy.core.config import SettingError

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def _uvloop() -> LoopFactory | None:
    try:
        module = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: LoopFactory = module.new_event_loop
    return factory


def loop_factory(choice: str) -> tuple[LoopFactory | None, str]:
    """The loop factory for ``choice`` (None: asyncio's default) and the loop's name."""
    if choice == "asyncio":
        return None, "asyncio"
    factory = _uvloop()
    if factory is not None:
        return factory, "uvloop"
    if choice == "uvloop":
        raise SettingError(
            "event_loop", "uvloop is not installed (pip install 'daxproxy[fast]'), or use 'auto'"
        )
    return None, "asyncio"
