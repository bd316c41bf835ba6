"""Loading the ``auth_file`` at start-up: the file from disk, the secrets from the
environment, parsed by :func:`daxproxy.core.access.parse_grants`.

The command line loads it before anything starts, so a bad file stops start-up with exit
code 2 and one line naming ``auth_file`` (and never a secret); the grants are handed on to
:func:`daxproxy.service.runtime.open_proxy`, which builds the check for the proxy's region.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from daxproxy.core.access import SETTING, Grant, parse_grants
from daxproxy.core.config import SettingError, Settings


def load_grants(path: str, environ: Mapping[str, str] | None = None) -> dict[str, Grant]:
    """The grants of the auth file at ``path``; its secrets' variables from ``environ``
    (the process's environment by default)."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise SettingError(SETTING, f"cannot read {path}: {exc.strerror}") from None
    return parse_grants(raw, path, os.environ if environ is None else environ)


def grants_of(
    settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, Grant] | None:
    """The grants of the ``auth_file`` setting; None without one."""
    if settings.auth_file is None:
        return None
    return load_grants(settings.auth_file, environ)
