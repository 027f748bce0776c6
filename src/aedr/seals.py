"""Seals: a digest naming a document's exact content, and a signature saying who vouches for it.

A calibration or case record carries the SHA-256 of its canonical JSON. The digest catches
corruption and hand edits that do not recompute it; anyone can recompute it, so it says nothing
about *who* wrote the file. That is what an Ed25519 signature over the digest adds: made with a
private key its owner keeps (``aedr keys NAME``), checked against public keys the reader trusts
(``--trust-key``). A signature made by any other key, or over other content, is refused.

>>> document = {"model": "taesd", "threshold": 2.5}
>>> digest_of(document)[:16]
'fda86feaed73f1a9'
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aedr.errors import AedrError

ALGORITHM = "ed25519"
PUBLIC_PREFIX = "aedr-ed25519 "
"""A public key file's one line: this prefix, then the raw key in base64."""


UNSEALED = ("seal", "annotation")
"""Fields a seal does not cover: itself, and the analyst's case label and note, which are added
after the record was made (a case record shows them beside the sealed evidence)."""


class SealError(AedrError, ValueError):
    """A signature or key that cannot be made, read or trusted; the message says which."""


def canonical(document: Mapping[str, Any]) -> bytes:
    """The JSON every digest is taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest_of(document: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of ``document``'s canonical JSON."""
    return hashlib.sha256(canonical(document)).hexdigest()


@dataclass(frozen=True)
class PublicKey:
    """A public key trusted to vouch for documents; ``key_id`` names it in messages."""

    raw: bytes

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def text(self) -> str:
        return PUBLIC_PREFIX + base64.b64encode(self.raw).decode()


@dataclass(frozen=True)
class SigningKey:
    """A private key (read from a file its owner keeps) and its public half."""

    private: Any  # cryptography's Ed25519PrivateKey
    public: PublicKey


def _ed25519():
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise SealError(
            "signing needs the cryptography package: pip install cryptography"
        ) from None
    return ed25519


def create_keys(stem: str | os.PathLike) -> tuple[Path, Path]:
    """A new key pair: ``STEM.key`` (private, PEM, mode 0600; never overwritten) and
    ``STEM.pub`` (public, one line to hand to readers)."""
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().Ed25519PrivateKey.generate()
    key_path, public_path = Path(f"{os.fspath(stem)}.key"), Path(f"{os.fspath(stem)}.pub")
    for path in (key_path, public_path):
        if path.exists():
            raise SealError(f"{path} exists: a key is never overwritten")
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    try:
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(pem)
        public_path.write_text(_public_of(private).text() + "\n")
    except OSError as exc:
        raise SealError(f"cannot write the keys {stem}.key/.pub: {exc.strerror or exc}") from None
    return key_path, public_path


def _public_of(private) -> PublicKey:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return PublicKey(raw)


def load_signing_key(path: str | os.PathLike) -> SigningKey:
    """The private key of a ``.key`` file made by :func:`create_keys`."""
    from cryptography.hazmat.primitives import serialization

    ed25519 = _ed25519()
    try:
        private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise SealError(f"cannot read the signing key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SealError(f"{path} is not a private key file of aedr keys ({exc})") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise SealError(f"{path} is not an Ed25519 private key")
    return SigningKey(private, _public_of(private))


def load_public_key(path: str | os.PathLike) -> PublicKey:
    """A public key from a ``.pub`` file (``aedr-ed25519 BASE64``)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SealError(f"cannot read the public key {path}: {exc}") from None
    return public_key_from_text(text, str(path))


def public_key_from_text(text: str, source: str = "public key") -> PublicKey:
    if not text.startswith(PUBLIC_PREFIX):
        raise SealError(f"{source} is not an aedr public key (a line '{PUBLIC_PREFIX}BASE64')")
    try:
        raw = base64.b64decode(text[len(PUBLIC_PREFIX) :], validate=True)
    except ValueError:
        raise SealError(f"{source}: the key is not valid base64") from None
    if len(raw) != 32:
        raise SealError(f"{source}: an Ed25519 public key has 32 bytes, not {len(raw)}")
    return PublicKey(raw)


def sign(digest: str, key: SigningKey) -> dict[str, str]:
    """A signature over ``digest`` (hex), with the public key that checks it."""
    return {
        "algorithm": ALGORITHM, "key_id": key.public.key_id,
        "public_key": key.public.text(),
        "value": base64.b64encode(key.private.sign(bytes.fromhex(digest))).decode(),
    }  # fmt: skip


def check_signature(digest: str, signature: Any, source: str) -> PublicKey:
    """The key that made ``signature`` over ``digest``; SealError if it does not hold."""
    from cryptography.exceptions import InvalidSignature

    if not isinstance(signature, Mapping) or signature.get("algorithm") != ALGORITHM:
        raise SealError(f"{source}: its signature is not an {ALGORITHM} signature of aedr")
    key = public_key_from_text(str(signature.get("public_key", "")), f"{source}'s signature")
    try:
        value = base64.b64decode(str(signature.get("value", "")), validate=True)
        verifier = _ed25519().Ed25519PublicKey.from_public_bytes(key.raw)
        verifier.verify(value, bytes.fromhex(digest))
    except (InvalidSignature, ValueError):
        raise SealError(
            f"{source}: its signature does not match its contents (edited after signing, or forged)"
        ) from None
    return key


def check_trusted(
    signer: PublicKey | None, trusted: Sequence[PublicKey], source: str
) -> None:  # fmt: skip
    """Refuse a document not signed by one of the ``trusted`` keys (none given: no check)."""
    if not trusted:
        return
    ids = ", ".join(k.key_id for k in trusted)
    if signer is None:
        raise SealError(f"{source} is not signed; only documents signed by {ids} are trusted")
    if signer.raw not in {k.raw for k in trusted}:
        raise SealError(
            f"{source} is signed by key {signer.key_id}, which is not trusted here (trusted: {ids})"
        )


def seal(document: Mapping[str, Any], key: SigningKey | None = None) -> dict[str, Any]:
    """``document`` with a ``seal``: the digest of the rest (but ``UNSEALED``), and a
    signature with ``key``."""
    content = {k: v for k, v in document.items() if k not in UNSEALED}
    digest = digest_of(content)
    stamp: dict[str, Any] = {"digest": digest}
    if key is not None:
        stamp["signature"] = sign(digest, key)
    return {**document, "seal": stamp}


def check_seal(document: Mapping[str, Any], source: str) -> PublicKey | None:
    """Check a sealed document's digest and signature; the signer's key (None if unsigned)."""
    stamp = document.get("seal")
    if not isinstance(stamp, Mapping) or "digest" not in stamp:
        raise SealError(f"{source} has no seal")
    content = {k: v for k, v in document.items() if k not in UNSEALED}
    if digest_of(content) != stamp["digest"]:
        raise SealError(f"{source}: its contents do not match its digest (edited or corrupt)")
    if "signature" not in stamp:
        return None
    return check_signature(stamp["digest"], stamp["signature"], source)
