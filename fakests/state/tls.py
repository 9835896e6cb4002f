"""A local certificate authority and a server certificate, kept in the state directory.

MSAL Python, msal-node and azure-identity accept only https authorities (entra-wire.md §10.1), so
fakests always has TLS material: ``{state_dir}/tls/ca.pem`` (give this to clients),
``server.pem`` and ``server-key.pem``. They are made with ``cryptography`` on first start (ECDSA
P-256: fast to make and to handshake, as trustme chose) and reused afterwards; the server
certificate is remade when the configured names change.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError
from .files import REMAKE, state_file, write_atomic

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
# Far, but not too far: some TLS stacks reject dates past 2049 encoded as UTCTime (trustme picks 3000
# for OpenSSL-on-Windows reasons; we only need "never expires during a test run").
_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the CA certificate and the server's certificate and key."""

    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fakests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(names: tuple[str, ...]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ensure_tls(directory: Path, extra_names: tuple[str, ...] = ()) -> TlsFiles:
    """The CA and a server certificate for localhost, 127.0.0.1, ::1 and ``extra_names``."""
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    names = tuple(dict.fromkeys((*DEFAULT_NAMES, *extra_names)))
    ca_key_path = directory / "ca-key.pem"
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)

    if files.ca.exists() and ca_key_path.exists():
        with state_file(files.ca, "CA certificate (PEM)"):
            ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        with state_file(ca_key_path, "CA key (an EC P-256 key, PEM)"):
            loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"a {type(loaded).__name__.removeprefix('_')}, not an EC key")
            ca_key = loaded
        if ca_cert.public_key() != ca_key.public_key():  # a server certificate it signed would not chain
            raise ConfigError(str(files.ca), "", f"does not belong to its key {ca_key_path.name}; {REMAKE} "
                                                 "with its key")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder().subject_name(_name("fakests local CA")).issuer_name(_name("fakests local CA"))
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_atomic(ca_key_path, _pem_key(ca_key), private=True)
        write_atomic(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        files.cert.unlink(missing_ok=True)

    names_file = directory / "server-names.json"
    with state_file(names_file, "list of server names (JSON)"):
        current = json.loads(names_file.read_text()) if names_file.exists() else None
    if not files.cert.exists() or not files.key.exists() or current != list(names):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + _VALIDITY - dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write_atomic(files.key, _pem_key(key), private=True)
        write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
        names_file.write_text(json.dumps(list(names)))
    return files




def thumbprint(cert_pem: Path) -> str:
    """The SHA-1 thumbprint (hex, upper case as Windows prints it) of the PEM certificate ``cert_pem``: what
    Service Fabric's ``IDENTITY_SERVER_THUMBPRINT`` names (MSAL Python ``managed_identity.py`` compares
    ``hashlib.sha1`` of the server's DER certificate with it)."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # a thumbprint, not a signature
