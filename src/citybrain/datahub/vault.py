"""Encrypted Parquet for what must never sit in the lake in the clear: the linkage store (the
identifiers record linkage needs) and the quarantine (bad rows as the agency sent them).

Parquet modular encryption (AES-GCM, per column): every sensitive column gets its own data key,
wrapped by the platform's field key (the same keyring as the person registry, with key ids, so
keys rotate); the footer is encrypted too, so without the key not even the schema's statistics
leak. Arrow does the cryptography in C++ for whole columns.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from citybrain.datahub.lake import UNIQUE_COLUMNS, part_compression
from citybrain.kit.errors import ConfigurationError
from citybrain.kit.keys import Keyring, get_keyring

_NONCE = 12
_AAD = b"citybrain-parquet-kek"


class _KeyringKms(pe.KmsClient):  # type: ignore[misc]
    """Wraps Parquet data keys with the keyring's field keys (the master key id is the kid)."""

    def __init__(self, keyring: Keyring) -> None:
        super().__init__()
        self._keyring = keyring

    def _key(self, kid: str) -> AESGCM:
        key = self._keyring.field_keys.get(kid)
        if key is None:
            raise ConfigurationError("缺少解密密钥", f"no field key with id {kid!r}")
        return AESGCM(key)

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        nonce = os.urandom(_NONCE)
        sealed = self._key(master_key_identifier).encrypt(nonce, key_bytes, _AAD)
        return base64.b64encode(nonce + sealed).decode("ascii")

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        blob = base64.b64decode(wrapped_key)
        return self._key(master_key_identifier).decrypt(blob[:_NONCE], blob[_NONCE:], _AAD)


def _codecs(table: pa.Table) -> dict[str, str]:
    """Per column: the part's codec, none for a column of nulls (nothing to compress)."""
    codec = part_compression(table.num_rows)
    return {
        c: "none" if table.column(c).null_count == table.num_rows else codec
        for c in table.column_names
    }


class Vault:
    """Writes and reads Parquet files whose named columns are encrypted."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self._keyring = keyring or get_keyring()
        ring = self._keyring
        self._factory = pe.CryptoFactory(lambda _config: _KeyringKms(ring))
        self._kms = pe.KmsConnectionConfig()

    def write(self, table: pa.Table, path: Path, encrypted: Sequence[str]) -> None:
        """Write ``table`` to ``path`` with ``encrypted`` columns and the footer sealed."""
        kid = self._keyring.active_field_kid
        config = pe.EncryptionConfiguration(
            footer_key=kid,
            column_keys={kid: [c for c in encrypted if c in table.column_names]},
            encryption_algorithm="AES_GCM_V1",
            plaintext_footer=False,
            double_wrapping=True,
            internal_key_material=True,
        )
        properties = self._factory.file_encryption_properties(self._kms, config)
        pq.write_table(
            table,
            path,
            encryption_properties=properties,
            compression=_codecs(table),
            # Dictionaries for the columns that repeat; ids and secrets hardly do.
            use_dictionary=[
                c for c in table.column_names if c not in encrypted and c not in UNIQUE_COLUMNS
            ],
        )

    def metadata(self, path: Path) -> pq.FileMetaData:
        """The file's footer (row counts, schema), decrypted; no data page is read."""
        properties = self._factory.file_decryption_properties(
            self._kms, pe.DecryptionConfiguration()
        )
        return pq.ParquetFile(path, decryption_properties=properties).metadata

    def read(self, path: Path, columns: Sequence[str] | None = None) -> pa.Table:
        """Read and decrypt a vault file."""
        properties = self._factory.file_decryption_properties(
            self._kms, pe.DecryptionConfiguration()
        )
        return pq.read_table(
            path, columns=list(columns) if columns else None, decryption_properties=properties
        )
