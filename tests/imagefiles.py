"""Image bytes the tests build: one place for every helper that writes them."""

import io
import struct
import zlib


def encode(image, pillow_format, **options):
    out = io.BytesIO()
    image.save(out, pillow_format, **options)
    return out.getvalue()


def png_chunk(kind, payload):
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png(width, height, *, bit_depth, colour_type, row: bytes, idat=None) -> bytes:
    """A PNG whose every row is `row` (filter byte included), compressed row by
    row so that building a huge one never holds its pixels in memory."""
    if idat is None:
        compressor = zlib.compressobj(9)
        idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def one_bit_png(width, height):
    """A valid all-black 1-bit PNG."""
    return png(width, height, bit_depth=1, colour_type=0, row=bytes(1 + (width + 7) // 8))


def flat_rgba_png(width, height, rgba=(30, 120, 200, 255)):
    """A valid one-colour RGBA PNG: 8000 × 7999 is about 250 kB and decodes to 256 MB."""
    return png(width, height, bit_depth=8, colour_type=6, row=b"\x00" + bytes(rgba) * width)


def png_header_only(width, height):
    """A valid PNG signature and IHDR claiming a size, with one tiny IDAT."""
    return png(width, height, bit_depth=8, colour_type=2, row=b"", idat=zlib.compress(b"\x00" * 16))
