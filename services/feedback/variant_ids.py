"""Signed copy-variant ids: what was sent, to whom, and from which arm, carried by the id itself.

An id is `payload.signature`: payload is base64url (no padding) of the tag as a compact JSON
array, version first, then the VariantTag fields in declaration order; signature is HMAC-SHA256
over the payload text, cut to 16 bytes, base64url. The id is signed, not encrypted: whoever holds
it can read the tag (user id included), but nobody without the secret can make or alter one.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.errors import DataFileError, InvalidArgument, excerpt

FORMAT_VERSION = 1
MAX_ID_CHARS = 1024
SIGNATURE_BYTES = 16
SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
# Domain separation: the same secret signing anything else never yields a valid variant id.
_SIGNING_PREFIX = b"tailor-variant-v1."
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class VariantTag:
    user_id: str  # "" for an anonymous shopper
    item_id: str
    channel: str
    language: str
    family: str  # template family: with tone, the bandit arm
    tone: str
    segment: str
    holdout: bool
    build_id: str
    issued_at: int  # unix seconds


_FIELDS = tuple(f.name for f in dataclasses.fields(VariantTag))


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(payload: str, secret: bytes) -> bytes:
    return hmac.new(secret, _SIGNING_PREFIX + payload.encode("ascii"), hashlib.sha256).digest()[:SIGNATURE_BYTES]


def sign_variant(tag: VariantTag, secret: bytes) -> str:
    """The signed id of `tag`; the same tag and secret always give the same id."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"a variant secret needs at least {MIN_SECRET_BYTES} bytes, not {len(secret)}")
    values = [FORMAT_VERSION] + [getattr(tag, name) for name in _FIELDS]
    values[_FIELDS.index("holdout") + 1] = int(tag.holdout)
    payload = _b64encode(json.dumps(values, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    variant_id = f"{payload}.{_b64encode(_signature(payload, secret))}"
    if len(variant_id) > MAX_ID_CHARS:  # read_variant would refuse it: fail here, where the cause is
        raise InvalidArgument("variant_id", f"the tag signs to {len(variant_id)} characters, over {MAX_ID_CHARS}")
    return variant_id


def read_variant(variant_id: str, secret: bytes) -> VariantTag:
    """The tag a signed id carries; InvalidArgument("variant_id") unless it is well formed and verifies."""
    if not isinstance(variant_id, str) or not variant_id:
        raise InvalidArgument("variant_id", "is empty or not a string")
    if len(variant_id) > MAX_ID_CHARS:
        raise InvalidArgument("variant_id", f"is {len(variant_id)} characters, over the {MAX_ID_CHARS} limit")
    if not _ID_SHAPE.fullmatch(variant_id):
        raise InvalidArgument("variant_id", f"{excerpt(variant_id)} is not a variant id (payload.signature)")
    payload, signature_text = variant_id.split(".")
    try:
        signature = _b64decode(signature_text)
    except (binascii.Error, ValueError):
        signature = b""
    # Canonical encoding only, so one tag has exactly one id (spare low bits could spell others).
    if len(signature) != SIGNATURE_BYTES or _b64encode(signature) != signature_text:
        raise InvalidArgument("variant_id", f"{excerpt(variant_id)} has a malformed signature")
    if not hmac.compare_digest(signature, _signature(payload, secret)):
        raise InvalidArgument("variant_id", "signature does not verify (altered, or signed with another secret)")
    return _tag_from(payload)


def _tag_from(payload: str) -> VariantTag:
    """Decode a verified payload; failing here means a format change, not a forgery."""
    try:
        values = json.loads(_b64decode(payload).decode("utf-8"))
    except (binascii.Error, ValueError):
        values = None
    if not isinstance(values, list) or len(values) != len(_FIELDS) + 1 or values[0] != FORMAT_VERSION:
        raise InvalidArgument("variant_id", f"is not a version-{FORMAT_VERSION} variant tag")
    fields = dict(zip(_FIELDS, values[1:]))
    texts_ok = all(isinstance(fields[name], str) for name in _FIELDS if name not in ("holdout", "issued_at"))
    numbers_ok = fields["holdout"] in (0, 1) and type(fields["issued_at"]) is int and type(fields["holdout"]) is int
    if not (texts_ok and numbers_ok):
        raise InvalidArgument("variant_id", f"is not a version-{FORMAT_VERSION} variant tag")
    fields["holdout"] = bool(fields["holdout"])
    return VariantTag(**fields)


def secret_from(path: Path) -> bytes:
    """The signing secret kept in `path` (hex), created there (mode 0600) on first use.

    Keep `path` outside build folders: a new secret invalidates every id already sent.
    """
    path = Path(path)
    if not path.exists():
        _create_secret(path)
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise DataFileError(str(path), "is not a hex-encoded secret") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise DataFileError(str(path), f"holds a {len(secret)}-byte secret; at least {MIN_SECRET_BYTES} needed")
    return secret


def _create_secret(path: Path) -> None:
    """Write a fresh secret atomically; if another process wins the race, its secret stands."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(SECRET_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, path)  # fails if the file exists: never overwrites a secret
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
