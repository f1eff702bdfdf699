"""Decrypt every page of a SQLCipher 3.x database and of its -wal file, so
tests can assert that a string occurs nowhere in the plaintext: not in live
rows, and not in freed pages, page slack or WAL frames either
(sqlcipher_export would only show the live rows).

Only for databases keyed with a raw key (PRAGMA key = "x'<64 hex>'") and
SQLCipher 3 defaults but the page size, which the store sets to 4096 (stores
made before it have SQLCipher 3's 1024; page_size=None finds which):
  * page 1 bytes 0..15: the random KDF salt, in clear;
  * the rest of each page, up to the reserve: AES-256-CBC ciphertext;
  * a 48-byte reserve at the end of every page: IV (16 bytes) then
    HMAC-SHA1 (20 bytes), padded to a multiple of the AES block;
  * raw key: the AES key is the raw key itself (no PBKDF2); the HMAC key is
    PBKDF2-HMAC-SHA1(raw key, salt XOR 0x3a, 2 iterations, 32 bytes), over
    ciphertext + IV + page number (4 bytes little endian).
WAL header (32 bytes) and frame headers (24 bytes) are in clear; each
frame's page is encrypted just like in the main file.

Debian's python3 plus python3-cryptography only.
"""
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SQLITE_MAGIC = b"SQLite format 3\0"
SALT_SIZE = 16
IV_SIZE = 16
HMAC_SIZE = 20
BLOCK = 16
RESERVE = (IV_SIZE + HMAC_SIZE + BLOCK - 1) // BLOCK * BLOCK  # 48
HMAC_SALT_MASK = 0x3A
FAST_KDF_ITER = 2
WAL_HEADER_SIZE = 32
WAL_FRAME_HEADER_SIZE = 24

WRONG_KEY = "wrong key or not a SQLCipher 3 database"


def _check_key(key):
    if not isinstance(key, (bytes, bytearray)) or len(key) != 32:
        raise TypeError("key must be the raw 32-byte key")


def hmac_key(key: bytes, salt: bytes) -> bytes:
    """The page HMAC key SQLCipher 3 derives from a raw key and the file salt."""
    hmac_salt = bytes(b ^ HMAC_SALT_MASK for b in salt)
    return hashlib.pbkdf2_hmac("sha1", bytes(key), hmac_salt, FAST_KDF_ITER, 32)


def _decrypt_page(raw, pgno, key, page_size, mac_key=None):
    """Plaintext of one encrypted page (page 1: the salt region is replaced
    by the SQLite magic). Checks the page HMAC when mac_key is given."""
    if len(raw) != page_size:
        raise ValueError("short page %d" % pgno)
    offset = SALT_SIZE if pgno == 1 else 0
    end = page_size - RESERVE
    ciphertext = raw[offset:end]
    iv = raw[end:end + IV_SIZE]
    if mac_key is not None:
        want = raw[end + IV_SIZE:end + IV_SIZE + HMAC_SIZE]
        got = hmac.new(mac_key, ciphertext + iv + struct.pack("<I", pgno), hashlib.sha1).digest()
        if not hmac.compare_digest(want, got):
            raise ValueError("HMAC mismatch on page %d: %s" % (pgno, WRONG_KEY))
    dec = Cipher(algorithms.AES(bytes(key)), modes.CBC(iv)).decryptor()
    plain = dec.update(ciphertext) + dec.finalize()
    # The reserve (IV, HMAC, padding) is kept as is, so it is scanned too.
    head = SQLITE_MAGIC if pgno == 1 else b""
    return head + plain + raw[end:]


PAGE_SIZES = (4096, 1024)


def page_size_of(path, key: bytes) -> int:
    """The cipher page size of a database: the one whose page 1 decrypts to
    a SQLite header giving that size."""
    _check_key(key)
    with open(path, "rb") as f:
        head = f.read(max(PAGE_SIZES))
    for size in PAGE_SIZES:
        if len(head) < size:
            continue
        try:
            _check_page1(_decrypt_page(head[:size], 1, key, size), size)
            return size
        except ValueError:
            continue
    raise ValueError(WRONG_KEY)


def _check_page1(page, page_size):
    """Decrypted page 1 must carry a plausible SQLite header."""
    size = struct.unpack(">H", page[16:18])[0]
    size = 65536 if size == 1 else size
    if size != page_size or page[20] != RESERVE or page[21:24] != b"\x40\x20\x20":
        raise ValueError(WRONG_KEY)


def decrypt_pages(path, key: bytes, page_size=None, verify_hmac=False) -> list:
    """Plaintext of each page of a SQLCipher 3 main database file. Raises
    ValueError("wrong key or not a SQLCipher 3 database") if page 1 does not
    decrypt to a SQLite header (or, with verify_hmac, a page HMAC fails)."""
    _check_key(key)
    if page_size is None:
        page_size = page_size_of(path, key)
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < page_size or len(data) % page_size:
        raise ValueError("%s: size %d is not a multiple of the page size %d" % (path, len(data), page_size))
    if data[:16] == SQLITE_MAGIC:
        raise ValueError(WRONG_KEY + " (plaintext SQLite file)")
    mac_key = hmac_key(key, data[:SALT_SIZE]) if verify_hmac else None
    pages = []
    for i in range(len(data) // page_size):
        pages.append(_decrypt_page(data[i * page_size:(i + 1) * page_size], i + 1, key, page_size, mac_key))
        if i == 0:
            _check_page1(pages[0], page_size)
    return pages


def wal_frames(path, page_size=None):
    """(page number, raw encrypted page) of every complete frame of a -wal
    file, including frames past the last commit and stale frames of earlier
    WAL generations (they still hold data). A trailing partial frame is ignored."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < WAL_HEADER_SIZE:
        return []
    magic, _version, wal_page_size = struct.unpack(">III", data[:12])
    if magic not in (0x377F0682, 0x377F0683):
        raise ValueError("%s: not a WAL file" % path)
    if page_size is None:
        page_size = wal_page_size
    if wal_page_size != page_size:
        raise ValueError("%s: WAL page size %d, expected %d" % (path, wal_page_size, page_size))
    frame = WAL_FRAME_HEADER_SIZE + page_size
    out = []
    pos = WAL_HEADER_SIZE
    while pos + frame <= len(data):
        pgno = struct.unpack(">I", data[pos:pos + 4])[0]
        out.append((pgno, data[pos + WAL_FRAME_HEADER_SIZE:pos + frame]))
        pos += frame
    return out


def decrypt_wal(path, key: bytes, salt: bytes, page_size=None, verify_hmac=False) -> list:
    """Plaintext of each frame's page in a -wal file (page_size None: the
    one its header gives). salt is the 16-byte salt of the main database
    file (only needed for verify_hmac)."""
    _check_key(key)
    mac_key = hmac_key(key, salt) if verify_hmac else None
    pages = []
    for pgno, raw in wal_frames(path, page_size):
        page = _decrypt_page(raw, pgno, key, len(raw), mac_key)
        if pgno == 1:
            _check_page1(page, len(raw))
        pages.append(page)
    return pages


def plaintext(db_path, key: bytes, page_size=None, verify_hmac=False) -> bytes:
    """All pages of the database and of its -wal (if present and non-empty),
    decrypted and concatenated."""
    if page_size is None:
        page_size = page_size_of(db_path, key)
    pages = decrypt_pages(db_path, key, page_size, verify_hmac)
    with open(db_path, "rb") as f:
        salt = f.read(SALT_SIZE)
    wal = db_path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        pages += decrypt_wal(wal, key, salt, page_size, verify_hmac)
    return b"".join(pages)


def _encodings(db_pages_head):
    """UTF-8 always, plus the text encoding the header declares."""
    encs = ["utf-8"]
    if len(db_pages_head) >= 60:
        enc = struct.unpack(">I", db_pages_head[56:60])[0]
        encs += {2: ["utf-16-le"], 3: ["utf-16-be"]}.get(enc, [])
    return encs


def contains(db_path, key: bytes, needle, page_size=None) -> bool:
    """Whether needle occurs anywhere in the decrypted database or WAL. A str
    is searched as stored: UTF-8 (and UTF-16 if the database uses it)."""
    data = plaintext(db_path, key, page_size)
    if isinstance(needle, (bytes, bytearray)):
        return bytes(needle) in data
    return any(needle.encode(e) in data for e in _encodings(data[:100]))
