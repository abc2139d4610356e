"""Identifiers of the synthetic data: emails and ECIDs (Experience Cloud IDs) of people, event ids.

Definition (as in Adobe's original notebook): the email of person ``i`` is
``f"synthetic-user-{i}@adobe.com"``; ``(a, b) = mmh3.hash64(email)`` are the two signed 64-bit halves of
MurmurHash3_x64_128 (seed 0) of its UTF-8 bytes. Each half becomes ``str(abs(x))`` and, when shorter than
19 digits, is left-padded with ``"0123456789012345678"`` truncated to the missing length. The ECID is the
concatenation of both padded halves (38 characters).

Profiles are generated for millions of people, so a Python loop calling ``mmh3`` per person is too slow.
Instead MurmurHash3_x64_128 is evaluated in numpy ``uint64`` arithmetic (which wraps modulo 2**64) over
many emails at once: emails whose index has the same number of digits have the same length, hence the
same block/tail structure, so each such group is hashed as a ``(rows, bytes)`` matrix, in chunks that keep
the temporaries cache-sized. Strings are built with pyarrow compute kernels rather than per-row formatting;
as a ``pa.StringArray`` holds at most 2 GiB of characters, callers should pass at most ~50M indices at once.

Event ids (XDM ``_id``) are 64-bit hex strings derived from (seed, person, rank of the event within
the person) by the splitmix64 mixer: unique, seeded, and fast to make in numpy.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMAIL_PREFIX = "synthetic-user-"
EMAIL_SUFFIX = "@adobe.com"
ECID_PART_DIGITS = 19
_PAD_DIGITS = "0123456789012345678"

_PREFIX_BYTES = np.frombuffer(EMAIL_PREFIX.encode(), dtype=np.uint8)
_SUFFIX_BYTES = np.frombuffer(EMAIL_SUFFIX.encode(), dtype=np.uint8)
# Rows hashed per numpy pass: large enough to amortise call overhead, small enough to stay in cache.
_CHUNK_ROWS = 1 << 16

_C1 = np.uint64(0x87C37B91114253D5)
_C2 = np.uint64(0x4CF5AD432745937F)
_N1 = np.uint64(0x52DCE729)
_N2 = np.uint64(0x38495AB5)
_FMIX_M1 = np.uint64(0xFF51AFD7ED558CCD)
_FMIX_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_TEN = np.uint64(10)

# 10**1 .. 10**19 (all representable in uint64); the number of entries <= x is digits(x) - 1.
_POWERS_OF_TEN = np.array([10**k for k in range(1, 20)], dtype=np.uint64)
# Padding prefix indexed by the number of digits of a hash half (0..19).
_PAD_PREFIXES = pa.array([_PAD_DIGITS[: ECID_PART_DIGITS - d] for d in range(ECID_PART_DIGITS + 1)])


def _as_person_index(person_index: np.ndarray) -> np.ndarray:
    """Validate person indices (non-negative integers) and return them as a 1-D int64 array."""
    index = np.asarray(person_index)
    if index.ndim != 1:
        raise ValueError("person_index must be a 1-D array")
    if index.size == 0:
        return index.astype(np.int64)
    if not np.issubdtype(index.dtype, np.integer):
        raise ValueError("person_index must hold integers")
    index = index.astype(np.int64, copy=False)
    if index.min() < 0:
        raise ValueError("person_index must be non-negative")
    return index


def _decimal_digits(values: np.ndarray) -> np.ndarray:
    """Count the decimal digits of each non-negative value (``0`` has one digit), as uint8."""
    below = np.searchsorted(_POWERS_OF_TEN, values.astype(np.uint64, copy=False), side="right")
    return (below + 1).astype(np.uint8)


def email_addresses(person_index: np.ndarray) -> pa.StringArray:
    """Email address ``synthetic-user-{i}@adobe.com`` of each person index, in input order."""
    index = _as_person_index(person_index)
    digits = pc.cast(pa.array(index, type=pa.int64()), pa.string())
    return pc.binary_join_element_wise(EMAIL_PREFIX, digits, EMAIL_SUFFIX, "")


def _email_key_length(n_digits: int) -> int:
    """Byte length of the email of an index with ``n_digits`` decimal digits."""
    return len(_PREFIX_BYTES) + n_digits + len(_SUFFIX_BYTES)


def _email_bytes(index: np.ndarray, n_digits: int) -> np.ndarray:
    """UTF-8 bytes of the emails of indices that all have ``n_digits`` digits, one row per index.

    Rows are zero-padded to a whole number of 16-byte blocks past the email, as ``_murmur3_x64_128``
    expects. The digits are peeled off least-significant first (scalar division, vectorised over rows).
    """
    length = _email_key_length(n_digits)
    keys = np.zeros((len(index), 16 * (length // 16 + 1)), dtype=np.uint8)
    keys[:, : len(_PREFIX_BYTES)] = _PREFIX_BYTES
    keys[:, len(_PREFIX_BYTES) + n_digits : length] = _SUFFIX_BYTES
    remaining = index.astype(np.uint64)
    for column in range(len(_PREFIX_BYTES) + n_digits - 1, len(_PREFIX_BYTES) - 1, -1):
        quotient = remaining // _TEN
        keys[:, column] = remaining - quotient * _TEN + np.uint64(ord("0"))
        remaining = quotient
    return keys


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    """Rotate each 64-bit lane of ``x`` left by ``r`` bits (in place; ``x`` is also returned)."""
    carry = x >> np.uint64(64 - r)
    x <<= np.uint64(r)
    x |= carry
    return x


def _mix_k1(k1: np.ndarray) -> np.ndarray:
    """MurmurHash3_x64_128 mixing of a first 64-bit lane, returned as a new array."""
    k1 = k1 * _C1
    _rotl(k1, 31)
    k1 *= _C2
    return k1


def _mix_k2(k2: np.ndarray) -> np.ndarray:
    """MurmurHash3_x64_128 mixing of a second 64-bit lane, returned as a new array."""
    k2 = k2 * _C2
    _rotl(k2, 33)
    k2 *= _C1
    return k2


def _fmix64(k: np.ndarray) -> None:
    """Apply the MurmurHash3 64-bit finalisation mix to ``k`` in place."""
    k ^= k >> np.uint64(33)
    k *= _FMIX_M1
    k ^= k >> np.uint64(33)
    k *= _FMIX_M2
    k ^= k >> np.uint64(33)


def _murmur3_x64_128(keys: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """MurmurHash3_x64_128 (seed 0) of the first ``length`` bytes of each row of a uint8 matrix.

    Rows must be zero-padded to a whole number of 16-byte blocks past ``length``: read as little-endian
    64-bit lanes, the padded tail then yields the tail words ``k1``/``k2`` of the reference algorithm.
    Returns the unsigned halves ``(h1, h2)``; ``mmh3.hash64`` returns the same values as signed ints.
    """
    lanes = keys.view("<u8")
    n_blocks = length // 16
    h1 = np.zeros(len(keys), dtype=np.uint64)
    h2 = np.zeros(len(keys), dtype=np.uint64)
    for block in range(n_blocks):
        h1 ^= _mix_k1(lanes[:, 2 * block])
        _rotl(h1, 27)
        h1 += h2
        h1 *= np.uint64(5)
        h1 += _N1
        h2 ^= _mix_k2(lanes[:, 2 * block + 1])
        _rotl(h2, 31)
        h2 += h1
        h2 *= np.uint64(5)
        h2 += _N2

    tail = length % 16
    if tail > 8:
        h2 ^= _mix_k2(lanes[:, 2 * n_blocks + 1])
    if tail > 0:
        h1 ^= _mix_k1(lanes[:, 2 * n_blocks])

    h1 ^= np.uint64(length)
    h2 ^= np.uint64(length)
    h1 += h2
    h2 += h1
    _fmix64(h1)
    _fmix64(h2)
    h1 += h2
    h2 += h1
    return h1, h2


def _email_hashes(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned MurmurHash3_x64_128 halves of each person's email address, in input order."""
    h1 = np.empty(len(index), dtype=np.uint64)
    h2 = np.empty(len(index), dtype=np.uint64)
    digits = _decimal_digits(index)
    for n_digits in np.unique(digits).tolist():
        group = np.flatnonzero(digits == n_digits)
        for start in range(0, len(group), _CHUNK_ROWS):
            rows = group[start : start + _CHUNK_ROWS]
            keys = _email_bytes(index[rows], n_digits)
            h1[rows], h2[rows] = _murmur3_x64_128(keys, _email_key_length(n_digits))
    return h1, h2


def _ecid_part(h: np.ndarray) -> tuple[pa.StringArray, pa.StringArray]:
    """Return the padding prefix and ``str(abs(x))`` of each hash half ``x`` (unsigned bit pattern ``h``).

    The magnitude is computed in uint64, where ``abs(-2**63) == 2**63`` still fits.
    """
    magnitude = np.where(h >> np.uint64(63), np.uint64(0) - h, h)
    prefix = _PAD_PREFIXES.take(pa.array(_decimal_digits(magnitude)))
    return prefix, pc.cast(pa.array(magnitude), pa.string())


def ecids(person_index: np.ndarray) -> pa.StringArray:
    """ECID (38 characters) of each person index, in input order; see the module docstring."""
    index = _as_person_index(person_index)
    if index.size == 0:
        return pa.array([], type=pa.string())
    h1, h2 = _email_hashes(index)
    return pc.binary_join_element_wise(*_ecid_part(h1), *_ecid_part(h2), "")


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 output function of each value (a bijection on uint64)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _fixed_width_strings(chars: np.ndarray) -> pa.StringArray:
    """A string array from an ``(n, width)`` uint8 matrix of ASCII characters, one row per string."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))


def event_ids(seed: int, person_index: np.ndarray, rank: np.ndarray) -> pa.Array:
    """The ``_id`` (16 hex digits) of each event (person index, rank within the person), seeded.

    Distinct (person, rank) pairs with rank < 2**24 give distinct ids within a seed: the key
    ``person << 24 | rank`` is injective, and xor with the seed's salt and splitmix64 are bijections.
    """
    key = (person_index.astype(np.uint64) << np.uint64(24)) | rank.astype(np.uint64)
    salt = _splitmix64(np.array([seed], dtype=np.uint64))[0]
    octets = _splitmix64(key ^ salt).astype(">u8").view(np.uint8).reshape(len(key), 8)
    nibbles = np.empty((len(key), 16), dtype=np.uint8)
    nibbles[:, 0::2], nibbles[:, 1::2] = octets >> 4, octets & 15
    chars = nibbles + np.uint8(ord("0")) + (nibbles > 9) * np.uint8(ord("a") - ord("9") - 1)
    return _fixed_width_strings(chars).cast(pa.string())
