"""A throw-away PKI for TLS tests, made with the ``openssl`` command line at test time.

The openssl binary is already on every machine that runs RabbitMQ's TLS listener, so
no Python dependency is added for this. Nothing here is ever reused outside a test:
keys are unencrypted (but one) and certificates are valid for one day.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# The one encrypted client key's passphrase: tests check it never shows in an error.
KEY_PASSWORD: Final = "s3cret-key-passphrase"
CLIENT_CN: Final = "memelearning-test-client"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # The client key encrypted with KEY_PASSWORD.
    client_key_encrypted: Path
    # A CA that signed nothing the broker uses: trusting only it must fail.
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key.name, "-out", cert.name, "-days", "1",
        "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return cert, key


def _leaf(
    directory: Path, name: str, cn: str, extensions: str, ca: tuple[Path, Path]
) -> tuple[Path, Path]:
    cert, key, csr = (directory / f"{name}{ext}" for ext in (".crt", ".key", ".csr"))
    ext_file = directory / f"{name}.ext"
    ext_file.write_text(extensions)
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", f"/CN={cn}",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", ca[0].name, "-CAkey", ca[1].name,
        "-CAcreateserial", "-out", cert.name, "-days", "1", "-extfile", ext_file.name,
        cwd=directory,
    )  # fmt: skip
    return cert, key


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate (CN
    ``CLIENT_CN``) signed by it, and an unrelated second CA."""
    ca = _ca(directory, "ca")
    server = _leaf(
        directory,
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        ca,
    )
    client = _leaf(
        directory,
        "client",
        CLIENT_CN,
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        ca,
    )
    encrypted = directory / "client-encrypted.key"
    _openssl(
        "pkey", "-in", client[1].name, "-aes256", "-passout", f"pass:{KEY_PASSWORD}",
        "-out", encrypted.name,
        cwd=directory,
    )  # fmt: skip
    other_ca, _ = _ca(directory, "other-ca")
    return Pki(
        ca=ca[0],
        server_cert=server[0],
        server_key=server[1],
        client_cert=client[0],
        client_key=client[1],
        client_key_encrypted=encrypted,
        other_ca=other_ca,
    )
