"""MISTY1 (RFC 2994): the 64-bit block cipher with a 128-bit key that STS6 uses as EA11.

Eight rounds, FL layers every second round and before the output, as RFC 2994 section 2 describes.
The key is 16 bytes; a block is 8 bytes, most significant byte first. Pure: no state is kept
between calls (the expanded key is computed per call; `expand_key` lets a caller reuse it).
"""

from __future__ import annotations

from meter_protocol.sts.errors import StsError

_S7 = (
    27, 50, 51, 90, 59, 16, 23, 84, 91, 26, 114, 115, 107, 44, 102, 73,
    31, 36, 19, 108, 55, 46, 63, 74, 93, 15, 64, 86, 37, 81, 28, 4,
    11, 70, 32, 13, 123, 53, 68, 66, 43, 30, 65, 20, 75, 121, 21, 111,
    14, 85, 9, 54, 116, 12, 103, 83, 40, 10, 126, 56, 2, 7, 96, 41,
    25, 18, 101, 47, 48, 57, 8, 104, 95, 120, 42, 76, 100, 69, 117, 61,
    89, 72, 3, 87, 124, 79, 98, 60, 29, 33, 94, 39, 106, 112, 77, 58,
    1, 109, 110, 99, 24, 119, 35, 5, 38, 118, 0, 49, 45, 122, 127, 97,
    80, 34, 17, 6, 71, 22, 82, 78, 113, 62, 105, 67, 52, 92, 88, 125,
)  # fmt: skip
_S9 = (
    451, 203, 339, 415, 483, 233, 251, 53, 385, 185, 279, 491, 307, 9, 45, 211,
    199, 330, 55, 126, 235, 356, 403, 472, 163, 286, 85, 44, 29, 418, 355, 280,
    331, 338, 466, 15, 43, 48, 314, 229, 273, 312, 398, 99, 227, 200, 500, 27,
    1, 157, 248, 416, 365, 499, 28, 326, 125, 209, 130, 490, 387, 301, 244, 414,
    467, 221, 482, 296, 480, 236, 89, 145, 17, 303, 38, 220, 176, 396, 271, 503,
    231, 364, 182, 249, 216, 337, 257, 332, 259, 184, 340, 299, 430, 23, 113, 12,
    71, 88, 127, 420, 308, 297, 132, 349, 413, 434, 419, 72, 124, 81, 458, 35,
    317, 423, 357, 59, 66, 218, 402, 206, 193, 107, 159, 497, 300, 388, 250, 406,
    481, 361, 381, 49, 384, 266, 148, 474, 390, 318, 284, 96, 373, 463, 103, 281,
    101, 104, 153, 336, 8, 7, 380, 183, 36, 25, 222, 295, 219, 228, 425, 82,
    265, 144, 412, 449, 40, 435, 309, 362, 374, 223, 485, 392, 197, 366, 478, 433,
    195, 479, 54, 238, 494, 240, 147, 73, 154, 438, 105, 129, 293, 11, 94, 180,
    329, 455, 372, 62, 315, 439, 142, 454, 174, 16, 149, 495, 78, 242, 509, 133,
    253, 246, 160, 367, 131, 138, 342, 155, 316, 263, 359, 152, 464, 489, 3, 510,
    189, 290, 137, 210, 399, 18, 51, 106, 322, 237, 368, 283, 226, 335, 344, 305,
    327, 93, 275, 461, 121, 353, 421, 377, 158, 436, 204, 34, 306, 26, 232, 4,
    391, 493, 407, 57, 447, 471, 39, 395, 198, 156, 208, 334, 108, 52, 498, 110,
    202, 37, 186, 401, 254, 19, 262, 47, 429, 370, 475, 192, 267, 470, 245, 492,
    269, 118, 276, 427, 117, 268, 484, 345, 84, 287, 75, 196, 446, 247, 41, 164,
    14, 496, 119, 77, 378, 134, 139, 179, 369, 191, 270, 260, 151, 347, 352, 360,
    215, 187, 102, 462, 252, 146, 453, 111, 22, 74, 161, 313, 175, 241, 400, 10,
    426, 323, 379, 86, 397, 358, 212, 507, 333, 404, 410, 135, 504, 291, 167, 440,
    321, 60, 505, 320, 42, 341, 282, 417, 408, 213, 294, 431, 97, 302, 343, 476,
    114, 394, 170, 150, 277, 239, 69, 123, 141, 325, 83, 95, 376, 178, 46, 32,
    469, 63, 457, 487, 428, 68, 56, 20, 177, 363, 171, 181, 90, 386, 456, 468,
    24, 375, 100, 207, 109, 256, 409, 304, 346, 5, 288, 443, 445, 224, 79, 214,
    319, 452, 298, 21, 6, 255, 411, 166, 67, 136, 80, 351, 488, 289, 115, 382,
    188, 194, 201, 371, 393, 501, 116, 460, 486, 424, 405, 31, 65, 13, 442, 50,
    61, 465, 128, 168, 87, 441, 354, 328, 217, 261, 98, 122, 33, 511, 274, 264,
    448, 169, 285, 432, 422, 205, 243, 92, 258, 91, 473, 324, 502, 173, 165, 58,
    459, 310, 383, 70, 225, 30, 477, 230, 311, 506, 389, 140, 143, 64, 437, 190,
    120, 0, 172, 272, 350, 292, 2, 444, 162, 234, 112, 508, 278, 348, 76, 450,
)  # fmt: skip

_ExpandedKey = tuple[int, ...]


def _fi(value: int, subkey: int) -> int:
    left9 = _S9[value >> 7] ^ (value & 0x7F)
    right7 = (_S7[value & 0x7F] ^ left9) & 0x7F
    right7 ^= subkey >> 9
    left9 = _S9[left9 ^ (subkey & 0x1FF)] ^ right7
    return (right7 << 9) | left9


def expand_key(key: bytes) -> _ExpandedKey:
    """The 32 16-bit words EK[0..15] of RFC 2994 section 2.2 (the split halves are taken when used)."""
    if len(key) != 16:
        raise StsError("a MISTY1 key is 16 bytes")
    words = [int.from_bytes(key[i : i + 2], "big") for i in range(0, 16, 2)]
    return tuple(words + [_fi(words[i], words[(i + 1) % 8]) for i in range(8)])


def _fo(ek: _ExpandedKey, value: int, i: int) -> int:
    t0, t1 = value >> 16, value & 0xFFFF
    t0 = _fi(t0 ^ ek[i], ek[(i + 5) % 8 + 8]) ^ t1
    t1 = _fi(t1 ^ ek[(i + 2) % 8], ek[(i + 1) % 8 + 8]) ^ t0
    t0 = _fi(t0 ^ ek[(i + 7) % 8], ek[(i + 3) % 8 + 8]) ^ t1
    t1 ^= ek[(i + 4) % 8]
    return (t1 << 16) | t0


def _fl_keys(ek: _ExpandedKey, i: int) -> tuple[int, int]:
    if i % 2 == 0:
        return ek[i // 2], ek[(i // 2 + 6) % 8 + 8]
    return ek[((i - 1) // 2 + 2) % 8 + 8], ek[((i - 1) // 2 + 4) % 8]


def _fl(ek: _ExpandedKey, value: int, i: int) -> int:
    and_key, or_key = _fl_keys(ek, i)
    d0, d1 = value >> 16, value & 0xFFFF
    d1 ^= d0 & and_key
    d0 ^= d1 | or_key
    return (d0 << 16) | d1


def _fl_inverse(ek: _ExpandedKey, value: int, i: int) -> int:
    and_key, or_key = _fl_keys(ek, i)
    d0, d1 = value >> 16, value & 0xFFFF
    d0 ^= d1 | or_key
    d1 ^= d0 & and_key
    return (d0 << 16) | d1


def encrypt_block(ek: _ExpandedKey, block: int) -> int:
    """One 64-bit block under an expanded key."""
    d0, d1 = block >> 32, block & 0xFFFFFFFF
    for i in (0, 2, 4, 6):
        d0 = _fl(ek, d0, i)
        d1 = _fl(ek, d1, i + 1) ^ _fo(ek, d0, i)
        d0 ^= _fo(ek, d1, i + 1)
    d0, d1 = _fl(ek, d0, 8), _fl(ek, d1, 9)
    return (d1 << 32) | d0


def decrypt_block(ek: _ExpandedKey, block: int) -> int:
    d1, d0 = block >> 32, block & 0xFFFFFFFF
    d0, d1 = _fl_inverse(ek, d0, 8), _fl_inverse(ek, d1, 9)
    for i in (6, 4, 2, 0):
        d0 ^= _fo(ek, d1, i + 1)
        d1 ^= _fo(ek, d0, i)
        d0, d1 = _fl_inverse(ek, d0, i), _fl_inverse(ek, d1, i + 1)
    return (d0 << 32) | d1


def _block(data: bytes) -> int:
    if len(data) != 8:
        raise StsError("a MISTY1 block is 8 bytes")
    return int.from_bytes(data, "big")


def misty1_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """Encrypt one 8-byte block under a 16-byte key."""
    return encrypt_block(expand_key(key), _block(plaintext)).to_bytes(8, "big")


def misty1_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    return decrypt_block(expand_key(key), _block(ciphertext)).to_bytes(8, "big")
