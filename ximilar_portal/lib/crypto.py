"""API-token encryption with a key ring (design §4.1).

Values look like `enc:aesgcm:<key id>:<urlsafe base64 of nonce + ciphertext + tag>`.
AES-256-GCM authenticates the value together with what it is bound to (for
example "credential:team:42"), so a value copied into another row does not
decrypt. The first key of the ring encrypts, every key decrypts, and `rotate`
moves old values to the first key. Anything wrong fails closed with
DecryptionError: this module never hands back ciphertext as if it were plaintext.

No Django here: callers pass the key ring spec from settings.
"""

import base64
import binascii
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "enc"
METHOD = "aesgcm"
ASSOCIATED_DATA_PREFIX = b"ximilar-portal:v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Strict, so that a value with stray characters is refused instead of being
# silently cleaned up by the base64 decoder.
URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")
STANDARD_OR_URLSAFE_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


class CryptoError(Exception):
    """Base class for everything this module raises."""


class KeyRingError(CryptoError):
    """The key ring spec is wrong. Messages name the problem, never the key."""


class DecryptionError(CryptoError):
    """A value cannot be decrypted: malformed, unknown key id, tampered, or
    bound to something else."""


class KeyRing:
    def __init__(self, ciphers: dict[str, AESGCM]):
        # Only AESGCM objects are kept, never the raw key bytes, so neither
        # repr() nor vars() nor an error report can show key material.
        if not ciphers:
            raise KeyRingError("The key ring has no keys.")
        self._ciphers = dict(ciphers)
        self.key_ids = list(self._ciphers)
        self.primary_id = self.key_ids[0]

    @classmethod
    def parse(cls, spec: str) -> "KeyRing":
        """Read "kid1:BASE64,kid2:BASE64"; the first key is the primary."""
        entries = [entry.strip() for entry in (spec or "").split(",")]
        entries = [entry for entry in entries if entry]  # tolerate a trailing comma
        if not entries:
            raise KeyRingError("The key ring is empty: expected 'key_id:base64key'.")
        ciphers = {}
        for number, entry in enumerate(entries, start=1):
            key_id, key = _parse_entry(number, entry)
            if key_id in ciphers:
                raise KeyRingError(f"Key ring entry {number}: key id '{key_id}' is repeated.")
            ciphers[key_id] = AESGCM(key)
        return cls(ciphers)

    def __repr__(self):
        return f"<KeyRing primary={self.primary_id!r} key_ids={self.key_ids!r}>"

    __str__ = __repr__

    def encrypt(self, plaintext: str, *, bound_to: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._ciphers[self.primary_id].encrypt(
            nonce, plaintext.encode(), _associated_data(bound_to)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{SCHEME}:{METHOD}:{self.primary_id}:{body}"

    def decrypt(self, value: str, *, bound_to: str) -> str:
        key_id, blob = _split(value)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(f"Unknown key id '{key_id}': it is not in the key ring.")
        nonce, sealed = blob[:NONCE_BYTES], blob[NONCE_BYTES:]
        try:
            plaintext = cipher.decrypt(nonce, sealed, _associated_data(bound_to))
            return plaintext.decode()
        except (InvalidTag, UnicodeDecodeError):
            raise DecryptionError(
                f"Value encrypted with key '{key_id}' failed authentication "
                "(tampered, or bound to something else)."
            ) from None

    def key_id_of(self, value: str) -> str:
        return _split(value)[0]

    def needs_rotation(self, value: str) -> bool:
        return self.key_id_of(value) != self.primary_id

    def rotate(self, value: str, *, bound_to: str) -> str:
        """Re-encrypt with the primary key. A value already on the primary key
        comes back unchanged, so running a rotation twice changes nothing. It
        is still decrypted first, so a broken value is reported, not skipped."""
        plaintext = self.decrypt(value, bound_to=bound_to)
        if not self.needs_rotation(value):
            return value
        return self.encrypt(plaintext, bound_to=bound_to)


def generate_key_spec(key_id: str) -> str:
    """A new "key_id:base64key" entry, to put first in the key ring."""
    if not KEY_ID.fullmatch(key_id or ""):
        raise KeyRingError("A key id is 1 to 32 characters of A-Z, a-z, 0-9, '_' and '-'.")
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def last4(token: str) -> str:
    """What the UI shows of a token. Nothing for short strings, where four
    characters would give away too much of the secret."""
    token = (token or "").strip()
    return token[-4:] if len(token) >= 12 else ""


def _parse_entry(number: int, entry: str) -> tuple[str, bytes]:
    # The entry is never echoed: without its colon it may be a bare key.
    key_id, colon, text = entry.partition(":")
    key_id, text = key_id.strip(), text.strip()
    if not colon:
        raise KeyRingError(f"Key ring entry {number} has no ':' (expected 'key_id:base64key').")
    if not KEY_ID.fullmatch(key_id):
        raise KeyRingError(
            f"Key ring entry {number}: the key id must be 1 to 32 characters "
            "of A-Z, a-z, 0-9, '_' and '-'."
        )
    key = _decode_key(text)
    if key is None:
        raise KeyRingError(f"Key ring entry {number} ('{key_id}'): the key is not valid base64.")
    if len(key) != KEY_BYTES:
        raise KeyRingError(
            f"Key ring entry {number} ('{key_id}'): the key is {len(key)} bytes "
            f"after base64 decoding; it must be exactly {KEY_BYTES}."
        )
    return key_id, key


def _decode_key(text: str) -> bytes | None:
    """Standard or urlsafe base64, padding optional; None when it is neither."""
    if not STANDARD_OR_URLSAFE_BASE64.fullmatch(text):
        return None
    text = text.rstrip("=").translate(str.maketrans("-_", "+/"))
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _split(value: str) -> tuple[str, bytes]:
    """The key id and the raw bytes of an encrypted value. Messages never
    include the value itself: it could be a plaintext token stored by mistake."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 4 or parts[0] != SCHEME or parts[1] != METHOD:
        raise DecryptionError(f"Not an '{SCHEME}:{METHOD}:' encrypted value.")
    key_id, body = parts[2], parts[3]
    if not KEY_ID.fullmatch(key_id) or not URLSAFE_BASE64.fullmatch(body):
        raise DecryptionError("Malformed encrypted value.")
    try:
        blob = base64.urlsafe_b64decode(body)
    except (binascii.Error, ValueError):
        raise DecryptionError("Malformed encrypted value.") from None
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("Malformed encrypted value: too short.")
    return key_id, blob


def _associated_data(bound_to: str) -> bytes:
    # An empty binding would make values portable between rows; that is a
    # programming error, so it is refused rather than encrypted.
    if not bound_to:
        raise CryptoError("bound_to must name what the value belongs to.")
    return ASSOCIATED_DATA_PREFIX + bound_to.encode()
