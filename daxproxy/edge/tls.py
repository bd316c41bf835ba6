"""The server's TLS context, from the ``tls_cert_file`` and ``tls_key_file`` settings.

:func:`server_context` is None when neither is set (plain HTTP), else an
:class:`ssl.SSLContext` for serving HTTPS: TLS 1.2 or newer, Python's default server
ciphers, no client certificates. It raises :class:`SettingError` naming the setting at
fault, before anything listens, when only one of the two is set, a file cannot be read,
the certificate file holds no PEM certificate, the key file no usable PEM private key (an
encrypted key is refused, never prompted for), or the key does not match the certificate.
"""

from __future__ import annotations

import ssl

from daxproxy.core.config import SettingError, Settings

CERT, KEY = "tls_cert_file", "tls_key_file"


def server_context(settings: Settings) -> ssl.SSLContext | None:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return None
    if cert is None:
        raise SettingError(CERT, f"must be set too when {KEY} is set")
    if key is None:
        raise SettingError(KEY, f"must be set too when {CERT} is set")
    for name, path in ((CERT, cert), (KEY, key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SettingError(name, f"cannot read {path}: {exc.strerror or exc}") from None
    try:  # the certificate on its own first, so that its faults are named as its own
        ssl.create_default_context(cafile=cert)
    except (ssl.SSLError, ValueError) as exc:
        raise SettingError(CERT, f"{cert} holds no PEM certificate ({_reason(exc)})") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise SettingError(KEY, f"{key} is encrypted; give an unencrypted key") from None
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise SettingError(KEY, f"{key} is not the key of {cert}") from None
        raise SettingError(KEY, f"{key} holds no usable PEM private key ({_reason(exc)})") from None
    return context


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey()


def _reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc)
