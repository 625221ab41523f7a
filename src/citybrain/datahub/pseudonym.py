"""Pseudonymisation at the door: identifiers become keyed hashes before anything reaches the
lake (the separation principle of record linkage).

The hash is the platform's blind index (HMAC-SHA256 with a domain per identifier kind), so a
resident ID in the lake matches the same person's blind index in the operational registry, and
nothing else can compute it without the key. Each distinct value of a column is hashed once
(identifiers repeat a great deal across a feed), and recent values are remembered across files.
"""

from __future__ import annotations

import threading

import numpy as np
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


# Big columns of these kinds are looked up by number, each value having an exact 64-bit
# integer key: a phone is 11 digits; a resident ID 17 digits and a check character (0-9 or X);
# a transit card up to 17 digits (its length is part of the key: leading zeros count).
NUMBERED_KINDS = frozenset({"phone", "id_number", "transit_card"})
NUMBERED_FROM = 1024  # rows; below this a dict lookup costs less than setting up arrays
_FILLER = {"phone": "0" * 11, "id_number": "0" * 18, "transit_card": "0"}


def numbered_keys(values: pa.Array, kind: str) -> np.ndarray | None:
    """Exact integer keys of validated phones, resident IDs or transit cards (nulls get a
    placeholder key), or None when some value has another shape."""
    filled = pc.fill_null(values, _FILLER[kind])
    lengths = pc.binary_length(filled)
    try:
        if kind == "phone":
            if not pc.all(pc.equal(lengths, 11)).as_py():
                return None
            keys = pc.cast(filled, pa.int64())
        elif kind == "id_number":
            if not pc.all(pc.equal(lengths, 18)).as_py():
                return None
            digits = pc.cast(pc.utf8_slice_codeunits(filled, 0, 17), pa.int64())
            check = pc.cast(
                pc.replace_substring(pc.utf8_slice_codeunits(filled, 17, 18), "X", "10"),
                pa.int64(),
            )
            keys = pc.add(pc.multiply(digits, 11), check)
        else:
            if pc.max(lengths).as_py() > 17 or not pc.all(pc.utf8_is_digit(filled)).as_py():
                return None
            keys = pc.add(
                pc.multiply(pc.cast(filled, pa.int64()), 32), pc.cast(lengths, pa.int64())
            )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    numbers: np.ndarray = keys.to_numpy(zero_copy_only=False)
    return numbers


class _NumberedCache:
    """Known values of one kind by integer key, with their lake hashes alongside."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, dtype=np.int64)
        self.digests = np.zeros((0, LAKE_HASH_BYTES), dtype=np.uint8)

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per key: its position in the cache and whether it is there (a hash lookup, which
        beats a sorted search for keys in no order)."""
        found = pc.index_in(pa.array(keys), value_set=pa.array(self.keys))
        known = np.asarray(pc.is_valid(found).to_numpy(zero_copy_only=False), dtype=bool)
        at = np.asarray(pc.fill_null(found, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return at, known

    def add(self, keys: np.ndarray, digests: np.ndarray) -> None:
        """Remember new keys (distinct, none known yet) with their hashes."""
        self.keys = np.concatenate([self.keys, keys])
        self.digests = np.concatenate([self.digests, digests])


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
        self._numbered: dict[str, _NumberedCache] = {}
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
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if kind in NUMBERED_KINDS and len(values) >= NUMBERED_FROM:
            keys = numbered_keys(values, kind)
            if keys is not None:
                return self._numbered_column(values, keys, kind)
        encoded = pc.dictionary_encode(values)
        digests = pa.array(self._digests(encoded.dictionary.to_pylist(), kind), LAKE_HASH)
        # Decoding a dictionary array is a gather, like a take, but cheaper.
        return pa.DictionaryArray.from_arrays(encoded.indices, digests).cast(LAKE_HASH)

    def _numbered_column(self, values: pa.Array, keys: np.ndarray, kind: str) -> pa.Array:
        """``column`` for phones and resident IDs: sorted-array lookups, no Python objects per
        value except for values not seen before."""
        present = np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
        with self._lock:
            cache = self._numbered.setdefault(kind, _NumberedCache())
            at, known = cache.find(keys)
            unknown = present & ~known
            if unknown.any():
                fresh, first = np.unique(keys[unknown], return_index=True)
                rows = np.flatnonzero(unknown)[first]
                texts = values.take(pa.array(rows)).to_pylist()
                raw = b"".join(d[:LAKE_HASH_BYTES] for d in self._index.raw_many(texts, kind))
                digests = np.frombuffer(raw, dtype=np.uint8).reshape(-1, LAKE_HASH_BYTES)
                if len(cache.keys) + len(fresh) > self._remember:
                    cache = self._numbered[kind] = _NumberedCache()
                cache.add(fresh, digests)
                at, known = cache.find(keys)
            # One 16-byte item per row: a gather of whole hashes, not of bytes.
            gathered = cache.digests.view(f"V{LAKE_HASH_BYTES}").ravel()[at]
        data = pa.py_buffer(gathered.tobytes())
        if values.offset == 0:  # the values' own validity bitmap marks the nulls
            return pa.Array.from_buffers(LAKE_HASH, len(values), [values.buffers()[0], data])
        hashed = pa.Array.from_buffers(LAKE_HASH, len(values), [None, data])
        return pc.if_else(pc.is_valid(values), hashed, pa.scalar(None, LAKE_HASH))
