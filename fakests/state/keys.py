"""Signing keys: made once, kept in the state directory, published as a JWKS, rotatable.

Entra's keys are RSA-2048 with a self-signed certificate; ``kid`` == ``x5t`` == base64url(SHA-1 of
the DER certificate) and each JWKS entry carries ``n``, ``e`` and ``x5c`` (entra-wire.md §1.4).
Keys live in ``{state_dir}/signing/*.pem`` (key + certificate), so a restart keeps tokens that
clients cached valid. Rotation makes a new active key and keeps the old ones in the JWKS for a grace
period. Key objects are loaded once: passing a PEM string to ``jwt.encode`` re-validates the key on
every call (about 60 ms, ``../shared/bench/README.md``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .directory import b64url
from .files import state_file, write_atomic

_PKCS1V15, _SHA256 = padding.PKCS1v15(), hashes.SHA256()  # RS256: RSASSA-PKCS1-v1_5 with SHA-256


def _self_signed(key: rsa.RSAPrivateKey, common_name: str, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256())
    )


def new_key_and_cert(common_name: str, days: int = 3650) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """An RSA-2048 key and a self-signed certificate for it (about 50 ms: do it once, not per test)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _self_signed(key, common_name, days)


def pem_of(key: rsa.RSAPrivateKey, cert: x509.Certificate) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ) + cert.public_bytes(serialization.Encoding.PEM)


def load_pem(data: bytes, *, ours: bool = False) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """Key and certificate from one PEM. ``ours``: a key fakests made and saved in its state directory,
    loaded without OpenSSL's RSA key check (about 30 ms per key, at every start); keys from elsewhere
    (``signing_key``) are checked."""
    key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=ours)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("signing keys must be RSA")
    return key, x509.load_pem_x509_certificate(data)


@dataclass(frozen=True)
class SigningKey:
    """One RSA key and its certificate; ``kid`` is the certificate's SHA-1 thumbprint, as Entra's."""

    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate
    retired_at: float | None = None

    # Worked out once per key (frozen: they never change), not once per token signed.
    @functools.cached_property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @functools.cached_property
    def kid(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())

    @functools.cached_property
    def public_key(self) -> rsa.RSAPublicKey:
        return self.private_key.public_key()

    @functools.cached_property
    def pem(self) -> bytes:
        """Key and certificate as one PEM: how a key travels to other worker processes (key objects
        cannot be pickled; ``store.SharedStore``)."""
        return pem_of(self.private_key, self.certificate)

    def header_segment(self, v1: bool) -> bytes:
        """The encoded JOSE header of tokens this key signs (``x5t`` too for v1), keys sorted as PyJWT
        sorts them."""
        return self._header_segments[1 if v1 else 0]

    @functools.cached_property
    def _header_segments(self) -> tuple[bytes, bytes]:
        def encode(header: dict[str, str]) -> bytes:
            text = json.dumps(header, separators=(",", ":"), sort_keys=True)
            return base64.urlsafe_b64encode(text.encode()).rstrip(b"=")

        v2 = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        return encode(v2), encode({**v2, "x5t": self.kid})

    def jwk(self, issuer: str | None = None) -> dict[str, Any]:
        nums = self.public_key.public_numbers()
        entry: dict[str, Any] = {
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": b64url(nums.n.to_bytes((nums.n.bit_length() + 7) // 8, "big")),
            "e": b64url(nums.e.to_bytes((nums.e.bit_length() + 7) // 8, "big")),
            "x5c": [base64.b64encode(self.der).decode()],
        }
        if issuer:
            entry["issuer"] = issuer
        return entry


@dataclass
class KeySet:
    """The active signing key plus retired keys still published for ``grace`` seconds."""

    keys: list[SigningKey]
    grace: float = 24 * 3600
    directory: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _kid_cache: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def active(self) -> SigningKey:
        return self.keys[-1]

    @classmethod
    def load_or_create(cls, directory: Path | None, pem: bytes | None = None) -> KeySet:
        """Keys from ``directory`` (made and saved there on first use), or from one PEM."""
        if pem is not None:
            return cls([SigningKey(*load_pem(pem))])
        if directory is None:
            return cls([SigningKey(*new_key_and_cert("fakests signing key"))])
        directory.mkdir(parents=True, exist_ok=True)
        files = sorted(directory.glob("key-*.pem"))
        if not files:
            key = SigningKey(*new_key_and_cert("fakests signing key"))
            write_atomic(directory / "key-0001.pem", pem_of(key.private_key, key.certificate), private=True)
            files = [directory / "key-0001.pem"]
        keys = []
        for f in files:
            with state_file(f, "signing key (an RSA key and its certificate, PEM)"):
                keys.append(SigningKey(*load_pem(f.read_bytes(), ours=True)))
        return cls(keys, directory=directory)

    def rotate(self, now: float | None = None) -> SigningKey:
        """Make a new active key; the previous one stays in the JWKS for the grace period."""
        new = SigningKey(*new_key_and_cert("fakests signing key"))
        with self._lock:
            now = time.time() if now is None else now
            self.keys[-1] = SigningKey(self.active.private_key, self.active.certificate, retired_at=now)
            self.keys.append(new)
            if self.directory is not None:
                write_atomic(self.directory / f"key-{len(self.keys):04d}.pem",
                             pem_of(new.private_key, new.certificate), private=True)
        return new

    def rotated_copy(self, now: float) -> KeySet:
        """A new key set for one sandbox: these keys (the active one retired at ``now``) plus a new
        active key, not saved to disk, so rotating one sandbox leaves the others untouched."""
        retired = [k if k.retired_at is not None else SigningKey(k.private_key, k.certificate, retired_at=now)
                   for k in self.keys]
        return KeySet([*retired, SigningKey(*new_key_and_cert("fakests signing key"))], grace=self.grace)

    def published(self, now: float) -> list[SigningKey]:
        return [k for k in self.keys if k.retired_at is None or now - k.retired_at < self.grace]

    def jwks(self, now: float, issuer: str | None = None) -> dict[str, Any]:
        return {"keys": [k.jwk(issuer) for k in self.published(now)]}

    def find(self, kid: str) -> SigningKey | None:
        return next((k for k in self.keys if k.kid == kid), None)

    def sign(self, claims: dict[str, Any], *, v1: bool = False, key: SigningKey | None = None,
             check: bool = False) -> str:
        """A compact RS256 JWT with ``kid`` (and ``x5t`` for v1 tokens, as Entra's v1 tokens have).

        RFC 7515 compact serialization, byte for byte what ``jwt.encode(claims, key, "RS256",
        headers=...)`` gives (a test holds them together), with the header segment encoded once per
        key: PyJWT's checks and header handling cost more per token than all of fakests' own work.
        ``check``: claims someone typed (``fakests token``, the admin mint) go through PyJWT, whose
        checks (``iss`` a string, times numbers) raise ``TypeError``/``ValueError``."""
        key = key or self.active
        if check:
            headers = {"typ": "JWT", "kid": key.kid, **({"x5t": key.kid} if v1 else {})}
            return jwt.encode(claims, key.private_key, algorithm="RS256", headers=headers)
        payload = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=")
        signing_input = key.header_segment(v1) + b"." + payload
        signature = key.private_key.sign(signing_input, _PKCS1V15, _SHA256)
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


