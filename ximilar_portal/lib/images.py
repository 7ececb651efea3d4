"""Everything the portal does to image bytes: format checks, re-encoding, thumbnails.

Uploads are untrusted. The format is decided from the content, never from the
file name, and only formats Ximilar accepts pass (design §4.3). Pillow itself
opens AVIF, JPEG 2000 and PSD, so every Image.open here names the one plugin
the sniffed format allows. Sizes are checked from the header before any pixel
is decoded, and decompression-bomb warnings are errors.

Decoding is the costly part (a full decode holds up to 4 bytes a pixel), so each
process decodes at most a few images at once (set_decode_concurrency), JPEGs are
decoded at the smallest scale that serves (draft), and the only full-size buffer
is the decoded image itself: conversion and reduction go a band of rows at a time.

No Django here: callers pass the limits from settings.
"""

import contextlib
import hashlib
import io
import math
import threading
import warnings
from dataclasses import dataclass, field

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()

# Pillow's own guard protects every decode in the process (thumbnails, the
# resize before sending). inspect_image's max_pixels is the primary limit and
# gives a precise message; this backstop sits above the default upload limit
# so that images which passed it can still be processed.
Image.MAX_IMAGE_PIXELS = 128_000_000

THUMBNAIL_SIZE = 320
REDUCING_GAP = 2  # reduce by whole factors to no less than twice the target, then resample
BAND_BYTES = 4 * 1024 * 1024  # rows converted and reduced at a time

USE_INSTEAD = "use JPEG, PNG, WEBP, HEIC, BMP or TIFF."
DAMAGED = "The image file is damaged or truncated."


@dataclass(frozen=True)
class _Format:
    mime: str
    extension: str
    plugin: str  # Pillow's format name: the only plugin allowed to open it
    # Copies of the decoded pixels (4 bytes each) the decoder holds at its peak.
    decode_copies: int = 1


FORMATS = {
    "JPEG": _Format("image/jpeg", ".jpg", "JPEG"),
    "PNG": _Format("image/png", ".png", "PNG"),
    # libwebp's animation decoder keeps two frames, and Pillow copies the one it returns.
    "WEBP": _Format("image/webp", ".webp", "WEBP", decode_copies=4),
    # pillow-heif calls HEIC "HEIF"; libheif's RGB buffer stays beside Pillow's.
    "HEIC": _Format("image/heic", ".heic", "HEIF", decode_copies=2),
    "BMP": _Format("image/bmp", ".bmp", "BMP"),
    "TIFF": _Format("image/tiff", ".tiff", "TIFF"),
    "GIF": _Format("image/gif", ".gif", "GIF"),
}
ALLOWED_FORMATS = frozenset(FORMATS)

# Signatures at offset 0 of formats we know to be images Ximilar accepts.
ACCEPTED_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),  # includes JFIF and Exif JPEGs
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Signatures at offset 0 of files we refuse, with what to call them.
REFUSED_SIGNATURES = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 images are"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 images are"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL images are"),
    (b"\xff\x0a", "JPEG XL images are"),
    (b"8BPS", "Photoshop (PSD) files are"),
    (b"%PDF-", "PDF documents are"),
    (b"%!PS", "PostScript files are"),
    (b"PK\x03\x04", "ZIP archives are"),
    (b"PK\x05\x06", "ZIP archives are"),
    (b"\x00\x00\x01\x00", "ICO icons are"),
)

# ISO media (ftyp) brands. HEIC is HEVC-coded HEIF; Ximilar accepts it but not
# generic HEIF (mif1, msf1) nor AVIF, and pillow-heif reports all of them as
# "HEIF", so the brand decides. The major brand is what the file says it is.
HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs"}
AVIF_BRANDS = {b"avif", b"avis"}
HEIF_BRANDS = {b"mif1", b"msf1", b"mif2", b"heif"}

# EXIF orientation -> the transpose that shows the image upright.
ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageRejected(ValueError):
    """The upload cannot be used. `message` is a sentence to show the user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ImageBusy(Exception):
    """No decode slot came free within the caller's wait. Nothing is wrong with
    the image: the same request can succeed `retry_after` seconds later."""

    message = "The server is busy with other large images; try again in a few seconds."

    def __init__(self, retry_after: int):
        super().__init__(self.message)
        self.retry_after = retry_after


# --- The per-process bound on concurrent decodes ------------------------------------------


class _DecodeSlots:
    """A slot is the memory of one full decode of the largest accepted image
    (slot_pixels × 4 bytes). A decode whose decoder holds more copies of its
    pixels takes several slots, all at once or none, so two big decodes never
    wait on each other holding one slot each."""

    def __init__(self, total: int, slot_pixels: int):
        self.total, self.slot_pixels, self.free = total, slot_pixels, total
        self._changed = threading.Condition()

    def needed(self, pixels: int, copies: int) -> int:
        return max(1, math.ceil(pixels * copies / self.slot_pixels))

    def take(self, count: int, wait: float | None) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self.free >= count, timeout=wait):
                return False
            self.free -= count
            return True

    def give(self, count: int) -> None:
        with self._changed:
            self.free += count
            self._changed.notify_all()


_decode_slots = _DecodeSlots(2, 64_000_000)


def set_decode_concurrency(slots: int, *, slot_pixels: int = 64_000_000) -> None:
    """How many full decodes of a `slot_pixels` image this process runs at
    once; the others wait for a slot. A decode in progress keeps (and gives
    back) the slots it took."""
    global _decode_slots
    _decode_slots = _DecodeSlots(max(1, slots), max(1, slot_pixels))


@contextlib.contextmanager
def decode_slot(wait: float | None = None, *, count: int = 1):
    """Hold `count` decode slots; ImageBusy after `wait` seconds without them
    (None: wait as long as it takes, for callers no person is waiting on)."""
    slots = _decode_slots
    count = min(count, slots.total)
    if not slots.take(count, wait):
        raise ImageBusy(retry_after=max(1, math.ceil(wait or 1)))
    try:
        yield
    finally:
        slots.give(count)


@contextlib.contextmanager
def _decoding(data: bytes, image_format: str, wait: float | None):
    """The image opened (header only), then the slots its decode needs."""
    with _open(data, image_format) as image:
        width, height = image.size
        copies = FORMATS[image_format].decode_copies
        with decode_slot(wait, count=_decode_slots.needed(width * height, copies)):
            yield image


@dataclass(frozen=True)
class ImageInfo:
    format: str  # one of ALLOWED_FORMATS
    mime: str
    width: int
    height: int
    first_frame_only: bool  # animated: Ximilar only looks at the first frame
    extension: str
    # WEBP thumbnail made by the same decode; empty if the pixels could not be made into one.
    thumbnail: bytes = field(default=b"", repr=False, compare=False)


def inspect_image(
    data: bytes,
    *,
    max_pixels: int = 64_000_000,
    max_bytes: int = 20 * 1024 * 1024,
    wait: float | None = None,
) -> ImageInfo:
    """What the upload is, with its thumbnail, or ImageRejected saying why it
    cannot be used. Size and format come from the header; then the pixels are
    decoded once, inside a decode slot (ImageBusy after `wait` seconds without
    one), at the smallest scale the thumbnail needs: that proves the file whole
    (a reduced JPEG decode still reads all of its coded data) and gives the thumbnail.

    Trailing bytes after a valid image (say a PNG with HTML appended) are
    accepted: the original bytes are only sent to Ximilar and served back with
    the detected image type, nosniff and a sandbox CSP, so they are never
    interpreted as anything but an image."""
    if not data:
        raise ImageRejected("The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"The file is {_megabytes(len(data))}; the limit is {_megabytes(max_bytes)}."
        )
    image_format = sniff_format(data)
    with _bomb_warnings_are_errors(), _rejecting_broken_files(max_pixels):
        with _open(data, image_format) as image:
            width, height = image.size
            _check_pixels(width, height, max_pixels)
            _check_decode_memory(width, height, image_format)
            animated = image_format in ("GIF", "PNG", "WEBP") and _is_animated(image)
        # A fresh copy: the animation check has read on into the second frame.
        with _decoding(data, image_format, wait) as image:
            box = (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
            _load_reduced(image, box)
            thumbnail = _thumbnail_or_nothing(image, box)
    spec = FORMATS[image_format]
    return ImageInfo(image_format, spec.mime, width, height, animated, spec.extension, thumbnail)


def make_thumbnail(data: bytes, *, size: int = THUMBNAIL_SIZE, wait: float | None = None) -> bytes:
    """A WEBP fitting in size × size, upright, flattened on white."""
    image_format = sniff_format(data)
    with (
        _bomb_warnings_are_errors(),
        _rejecting_broken_files(),
        _decoding(data, image_format, wait) as image,
    ):
        _load_reduced(image, (size, size))
        return _webp(_upright_rgb(image, (size, size)))


def shrink_for_api(data: bytes, shorter_side: int) -> bytes:
    """Downscale like the official client: only when both sides exceed
    `shorter_side`, then so the shorter side equals it. Small images go as they are.
    Re-encoded images are upright RGB JPEG: the EXIF that said how to rotate
    them is not carried over, and Ximilar drops transparency anyway.
    Raises ImageRejected when the bytes are not a readable allowed image. Waits
    for a decode slot as long as it takes: the engine has no person waiting."""
    if not shorter_side:
        return data
    image_format = sniff_format(data)
    with _bomb_warnings_are_errors(), _rejecting_broken_files():
        with _open(data, image_format) as image:
            width, height = image.size
        if min(width, height) <= shorter_side:
            return data
        scale = shorter_side / min(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        with _decoding(data, image_format, None) as image:
            _load_reduced(image, size)
            resized = _upright_rgb(image, size, exact=True)
        out = io.BytesIO()
        resized.save(out, "JPEG", quality=95)
        return out.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sniff_format(data: bytes) -> str:
    """The format name from the first bytes, or ImageRejected naming what it is."""
    head = data[:4096]
    for signature, name in ACCEPTED_SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return _sniff_iso_media(head)
    for signature, what in REFUSED_SIGNATURES:
        if head.startswith(signature):
            raise ImageRejected(f"{what} not supported by Ximilar; {USE_INSTEAD}")
    _refuse_markup(head)
    raise ImageRejected(f"The file is not an image in a supported format; {USE_INSTEAD}")


def _sniff_iso_media(head: bytes) -> str:
    major = head[8:12]
    box_end = min(int.from_bytes(head[:4], "big"), len(head))
    compatible = {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if major in HEIC_BRANDS:
        return "HEIC"
    if major in AVIF_BRANDS or AVIF_BRANDS & compatible:
        raise ImageRejected(f"AVIF images are not supported by Ximilar; {USE_INSTEAD}")
    if major in HEIF_BRANDS:
        raise ImageRejected(
            "HEIF images other than HEIC are not supported by Ximilar; " + USE_INSTEAD
        )
    raise ImageRejected(f"Video and other ISO media files are not images; {USE_INSTEAD}")


def _refuse_markup(head: bytes) -> None:
    """SVG and HTML are text: name them, since SVG can carry scripts."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if not text.startswith(b"<"):
        return
    if b"<svg" in text:
        raise ImageRejected(f"SVG images are not supported by Ximilar; {USE_INSTEAD}")
    if any(tag in text for tag in (b"<html", b"<!doctype html", b"<body", b"<script", b"<head")):
        raise ImageRejected(f"This is an HTML page, not an image; {USE_INSTEAD}")
    raise ImageRejected(f"This is an XML or markup document, not an image; {USE_INSTEAD}")


def _open(data: bytes, image_format: str) -> Image.Image:
    return Image.open(io.BytesIO(data), formats=[FORMATS[image_format].plugin])


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageRejected(DAMAGED)
    if width * height > max_pixels:
        raise ImageRejected(
            f"The image is {width} × {height} pixels ({width * height:,}); "
            f"the limit is {max_pixels:,} pixels."
        )


def _check_decode_memory(width: int, height: int, image_format: str) -> None:
    """Refuse what this process could never decode within its slots: formats
    whose decoder holds several copies of the pixels have a lower pixel limit."""
    copies = FORMATS[image_format].decode_copies
    if _decode_slots.needed(width * height, copies) > _decode_slots.total:
        limit = _decode_slots.total * _decode_slots.slot_pixels // copies
        raise ImageRejected(
            f"The image is {width} × {height} pixels ({width * height:,}); "
            f"{image_format} images take {copies} times the memory of others to decode, "
            f"so the limit for them is {limit:,} pixels."
        )


def _is_animated(image: Image.Image) -> bool:
    # Only asked after the size check: it reads on into the second frame.
    return bool(getattr(image, "is_animated", False))


def _load_reduced(image: Image.Image, size: tuple[int, int]) -> None:
    """Decode the first frame, a JPEG at the smallest scale (1/2 to 1/8) that
    still covers `size`. Damaged and truncated files fail here."""
    image.draft("RGB", size)
    image.load()


def _thumbnail_or_nothing(image: Image.Image, box: tuple[int, int]) -> bytes:
    """The thumbnail of decoded pixels, or b"" when they cannot be shown: the
    file is still a readable image, it just gets no preview."""
    try:
        return _webp(_upright_rgb(image, box))
    except Exception:  # wide on purpose: any conversion failure means "no preview"
        return b""


def _webp(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "WEBP", quality=80)
    return out.getvalue()


def _upright_rgb(image: Image.Image, box: tuple[int, int], exact: bool = False) -> Image.Image:
    """A loaded image fitted in `box` (or resized to it exactly), rotated as
    its EXIF says, as RGB on a white background."""
    # Read after load: TIFF and HEIC apply their orientation while loading.
    orientation = _orientation(image)
    size = box if exact else _fit_within(image.size, box)
    image = _resized_rgb_or_rgba(image, size)
    if orientation in ORIENTATION_TRANSPOSE:
        image = image.transpose(ORIENTATION_TRANSPOSE[orientation])
    return _flatten_on_white(image)


def _fit_within(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """Pillow's thumbnail size: aspect ratio kept, never enlarged."""
    width, height = size
    x, y = box
    if x >= width and y >= height:
        return size
    aspect = width / height

    def closest(candidates, error):
        return max(min(candidates, key=error), 1)

    if x / y >= aspect:
        x = closest((math.floor(y * aspect), math.ceil(y * aspect)), lambda n: abs(aspect - n / y))
    else:
        y = closest(
            (math.floor(x / aspect), math.ceil(x / aspect)),
            lambda n: 0 if n == 0 else abs(aspect - x / n),
        )
    return x, y


def _resized_rgb_or_rgba(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Converted and resized like Image.thumbnail with reducing_gap: first a
    reduction by whole factors, then a Lanczos resample of what is left."""
    width, height = image.size
    factors = (
        max(1, int(width / size[0] / REDUCING_GAP)),
        max(1, int(height / size[1] / REDUCING_GAP)),
    )
    reduced = _reduced_by_bands(image, factors)
    if reduced.size == size:
        return reduced
    area = (0, 0, width / factors[0], height / factors[1])
    return reduced.resize(size, Image.Resampling.LANCZOS, box=area)


def _reduced_by_bands(image: Image.Image, factors: tuple[int, int]) -> Image.Image:
    """Converted to RGB(A) and reduced by `factors`, a band of rows at a time,
    so no second full-size buffer exists beside the decoded image. Bands are
    whole multiples of the vertical factor: the result equals a reduction of
    the whole image."""
    width, height = image.size
    factor_x, factor_y = factors
    rows = factor_y * max(1, BAND_BYTES // (4 * width * factor_y))
    reduced = None
    for top in range(0, height, rows):
        band = _to_rgb_or_rgba(image.crop((0, top, width, min(top + rows, height))))
        if factors != (1, 1):
            band = band.reduce(factors)
        if reduced is None:
            size = (math.ceil(width / factor_x), math.ceil(height / factor_y))
            reduced = Image.new(band.mode, size)
        reduced.paste(band, (0, top // factor_y))
    return reduced


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # corrupt EXIF: show the image as stored
        return 1


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I;16") or image.mode == "I":
        # Plain conversion clips 16-bit values to white; scale them to 8 bits.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    wanted = "RGB"
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        wanted = "RGBA"
    return image if image.mode == wanted else image.convert(wanted)


def _flatten_on_white(image: Image.Image) -> Image.Image:
    if image.mode != "RGBA":
        return image
    background = Image.new("RGB", image.size, "white")
    background.paste(image, mask=image.getchannel("A"))
    return background


@contextlib.contextmanager
def _bomb_warnings_are_errors():
    """Pillow warns, rather than fails, between MAX_IMAGE_PIXELS and twice
    that. Here that warning is an error. Other Pillow warnings are about
    metadata, not safety: the decode decides whether the file is usable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


@contextlib.contextmanager
def _rejecting_broken_files(max_pixels: int | None = None):
    """Turn whatever the decoders raise on hostile input into ImageRejected.
    Untrusted bytes make Pillow raise many types (OSError, SyntaxError,
    struct.error, EOFError, ValueError, ...), so the net is wide on purpose."""
    try:
        yield
    except (ImageRejected, ImageBusy):
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow refuses these inside Image.open, before the exact size is
        # known to us, so the message gives Pillow's bound and the limit.
        backstop = Image.MAX_IMAGE_PIXELS
        limit = min(max_pixels or backstop, backstop)
        raise ImageRejected(
            f"The image is too large: it has more than {backstop:,} pixels; "
            f"the limit is {limit:,} pixels."
        ) from None
    except Exception as error:  # wide on purpose, see the docstring
        raise ImageRejected(DAMAGED) from error


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
