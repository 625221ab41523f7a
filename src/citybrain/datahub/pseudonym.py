"""Pseudonymisation at the door: identifiers become keyed hashes before anything reaches the
lake (the separation principle of record linkage).

The hash is the platform's blind index (HMAC-SHA256 with a domain per identifier kind), so a
resident ID in the lake matches the same person's blind index in the operational registry, and
nothing else can compute it without the key. Each distinct value of a column is hashed once
(identifiers repeat a great deal across a feed), and recent values are remembered across files.
"""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.compute as pc

from citybrain.kit.crypto import BlindIndex, blind_index

# The lake keeps the first 128 bits of the blind index as 16 raw bytes: as unguessable without
# the key, no collisions at any city's scale, and a quarter of the hex digest's bytes to write,
# hash and join on (random bytes do not compress: the lake stores them plain).
LAKE_HASH_BYTES = 16
LAKE_HASH = pa.binary(LAKE_HASH_BYTES)
# Identifier field -> (lake column, blind-index domain). The domains match the registry's.
IDENTIFIER_FIELDS: dict[str, tuple[str, str]] = {
    "id_number": ("id_hmac", "id_number"),
    "phone": ("phone_hmac", "phone"),
    "passport": ("passport_hmac", "passport"),
    "plate": ("plate_hmac", "plate"),
    "card": ("card_hmac", "transit_card"),
}


class Pseudonymiser:
    """Keyed hashing of identifier columns, one distinct value at a time.

    ``column`` gives the lake's form: the first 16 bytes of the platform's blind index, so a
    registry person's ``bytes.fromhex(id_bidx[:32])`` (DuckDB: ``unhex(id_bidx[:32])``) finds
    their records in the lake.
    """

    def __init__(self, index: BlindIndex | None = None, *, remember: int = 2_000_000) -> None:
        self._index = index or blind_index()
        self._remember = remember
        self._caches: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def _digests(self, values: list[str], kind: str) -> list[bytes]:
        with self._lock:  # files may be taken in on several threads
            cache = self._caches.setdefault(kind, {})
            found = list(map(cache.get, values))
            if None not in found:
                return found  # type: ignore[return-value]
            missing = [i for i, digest in enumerate(found) if digest is None]
            fresh = self._index.raw_many([values[i] for i in missing], kind)
            if len(cache) + len(missing) > self._remember:
                cache.clear()  # simpler than LRU, and the next files refill what they use
            for i, digest in zip(missing, fresh, strict=True):
                short = digest[:LAKE_HASH_BYTES]
                found[i] = short
                cache[values[i]] = short
            return found  # type: ignore[return-value]

    def column(self, values: pa.Array, kind: str) -> pa.Array:
        """The keyed hash of every value (null stays null)."""
        if len(values) == 0:
            return pa.array([], LAKE_HASH)
        encoded = pc.dictionary_encode(values)
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        digests = pa.array(self._digests(encoded.dictionary.to_pylist(), kind), LAKE_HASH)
        # Decoding a dictionary array is a gather, like a take, but cheaper.
        return pa.DictionaryArray.from_arrays(encoded.indices, digests).cast(LAKE_HASH)
