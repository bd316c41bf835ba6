"""The TLS settings: a context from a good pair, exit 2 naming the setting for a bad one."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from daxproxy.core.config import SettingError, Settings
from daxproxy.edge.cli import main
from daxproxy.edge.tls import server_context


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    paths = {name: directory / f"{name}.pem" for name in ("cert", "key", "other", "junk")}
    issued.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    issued.private_key_pem.write_to_path(str(paths["key"]))
    ca.issue_cert("localhost").private_key_pem.write_to_path(str(paths["other"]))
    paths["junk"].write_text("not a PEM file\n")
    paths["missing"] = directory / "missing.pem"
    return {name: str(path) for name, path in paths.items()}


def test_no_tls_settings_mean_plain_http() -> None:
    assert server_context(Settings()) is None


def test_a_matching_pair_makes_a_server_context(pems: dict[str, str]) -> None:
    context = server_context(Settings(tls_cert_file=pems["cert"], tls_key_file=pems["key"]))
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("cert", "key", "setting", "words"),
    [
        ("cert", None, "tls_key_file", "must be set"),
        (None, "key", "tls_cert_file", "must be set"),
        ("missing", "key", "tls_cert_file", "cannot read"),
        ("cert", "missing", "tls_key_file", "cannot read"),
        ("junk", "key", "tls_cert_file", "no PEM certificate"),
        ("key", "key", "tls_cert_file", "no PEM certificate"),
        ("cert", "junk", "tls_key_file", "no usable PEM private key"),
        ("cert", "other", "tls_key_file", "is not the key of"),
    ],
)
def test_a_bad_pair_names_the_setting(
    pems: dict[str, str], cert: str | None, key: str | None, setting: str, words: str
) -> None:
    settings = Settings(
        tls_cert_file=None if cert is None else pems[cert],
        tls_key_file=None if key is None else pems[key],
    )
    with pytest.raises(SettingError) as caught:
        server_context(settings)
    assert caught.value.setting == setting
    assert words in caught.value.problem


def test_an_encrypted_key_is_refused_not_prompted_for(pems: dict[str, str], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(Path(pems["key"]).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(SettingError, match="encrypted") as caught:
        server_context(Settings(tls_cert_file=pems["cert"], tls_key_file=str(encrypted)))
    assert caught.value.setting == "tls_key_file"


@pytest.mark.parametrize(
    ("flags", "setting"),
    [
        (["--tls-cert-file", "{cert}"], "tls_key_file"),
        (["--tls-key-file", "{key}"], "tls_cert_file"),
        (["--tls-cert-file", "{junk}", "--tls-key-file", "{key}"], "tls_cert_file"),
        (["--tls-cert-file", "{cert}", "--tls-key-file", "{other}"], "tls_key_file"),
    ],
)
def test_the_cli_exits_2_naming_the_setting_before_listening(
    pems: dict[str, str], flags: list[str], setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unreachable upstream: had the proxy started, it would listen and never return.
    argv = [flag.format(**pems) for flag in flags]
    assert main([*argv, "--upstream", "http://127.0.0.1:9", "--port", "0"], {}) == 2
    assert f"setting '{setting}'" in capsys.readouterr().err
