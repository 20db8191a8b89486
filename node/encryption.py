"""Message bodies encrypted at rest, for queues with `_enable_encrypt_messages` (Zaqar 23's
`transport/encryptor.py`, AES256 algorithm).

As Zaqar: AES-256 in CBC mode with PKCS7 padding, the key the SHA-256 digest of the configured
key, a random 16-byte IV in front of the ciphertext, the whole base64-encoded: a stored body is
a string. Zaqar pickles bodies that are not strings; here every body is serialized as JSON before
encryption (a stored body must never be unpickled: that runs code), so the plaintext of a string
body is its JSON text too. Bodies are encrypted on post and decrypted on every read of a queue
that has the attribute on; one stored before the attribute was turned on is not ciphertext and
comes back as it is, as in Zaqar.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

IV_BYTES = 16
KEY_SETTING = "MARCONI_MESSAGE_ENCRYPTION_KEY"
ENCRYPTED = "_enable_encrypt_messages"  # the queue attribute that turns encryption on


class MessageCipher:
    def __init__(self, key: str) -> None:
        if not key:
            raise ValueError("a message encryption key must not be empty")
        self._key = hashlib.sha256(key.encode()).digest()

    def __repr__(self) -> str:
        return "MessageCipher(key=...)"

    def encrypt(self, body: Any) -> str:
        iv = os.urandom(IV_BYTES)
        padder = padding.PKCS7(algorithms.AES.block_size).padder()
        plain = padder.update(json.dumps(body).encode()) + padder.finalize()
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        return base64.b64encode(iv + encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, stored: Any) -> Any:
        """The body that `encrypt` was given; `stored` itself when it is not this key's
        ciphertext (a body stored before encryption was turned on)."""
        if not isinstance(stored, str):
            return stored
        try:
            raw = base64.b64decode(stored, validate=True)
        except (binascii.Error, ValueError):
            return stored
        if len(raw) <= IV_BYTES or len(raw) % IV_BYTES:
            return stored
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(raw[:IV_BYTES])).decryptor()
        padded = decryptor.update(raw[IV_BYTES:]) + decryptor.finalize()
        unpadder = padding.PKCS7(algorithms.AES.block_size).unpadder()
        try:
            return json.loads(unpadder.update(padded) + unpadder.finalize())
        except ValueError:
            return stored
