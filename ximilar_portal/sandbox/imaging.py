"""Turning a record's `_base64` or `_url` into pixels, and measuring them.

Everything the sandbox says about an image starts here: its size, a feature
vector for similarity search, simple statistics (brightness, saturation,
contrast, edges) and where a plain background ends.
"""

import base64
import binascii
import http.client
import io
import math
import operator
import re
import urllib.error
import urllib.request
from functools import cached_property

from PIL import Image, ImageChops, ImageFilter, ImageOps

try:  # HEIC is on Ximilar's list; the sandbox reads it when pillow-heif is installed.
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover - optional
    pillow_heif = None

# The formats Ximilar documents as supported. Pillow also opens AVIF, JPEG 2000,
# PSD and more; Ximilar refuses those, so the sandbox does too.
ACCEPTED_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF"}
HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis"}
DATA_URI_PREFIX = re.compile(r"^data:[\w/+.-]*;base64,")
URL_TIMEOUT_SECONDS = 5
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 50_000_000  # under Pillow's own bomb limit, so it never has to warn
ANALYSIS_SIZE = 256  # longer side of the copy every measurement works on
THUMB_SIDE = 16  # grayscale thumbnail in the similarity features
HISTOGRAM_LEVELS = 4  # per channel: 4 x 4 x 4 = 64 colour bins


class ImageProblem(Exception):
    """The record's image could not be read; the text goes into its `_status`."""


def picture_from_record(record: dict) -> "Picture":
    if record.get("_base64"):
        return Picture(open_image(decode_base64(record["_base64"])))
    if record.get("_url"):
        return Picture(open_image(download(record["_url"])))
    raise ImageProblem("record has neither _url nor _base64")


def decode_base64(value) -> bytes:
    if not isinstance(value, str):
        raise ImageProblem("_base64 must be a string")
    try:
        return base64.b64decode(DATA_URI_PREFIX.sub("", value.strip()))
    except (binascii.Error, ValueError) as error:
        raise ImageProblem(f"invalid base64 data: {error}") from error


def download(url) -> bytes:
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ImageProblem("could not download image: only http and https URLs are fetched")
    # The scheme is checked above, so S310's file: and custom-scheme worry does not apply.
    request = urllib.request.Request(url, headers={"User-Agent": "ximilar-portal-sandbox"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_SECONDS) as response:  # noqa: S310
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException) as error:
        raise ImageProblem(f"could not download image: {error}") from error
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise ImageProblem("could not download image: larger than 20 MB")
    return data


def open_image(data: bytes) -> Image.Image:
    if not data:
        raise ImageProblem("could not decode image: no data")
    try:
        image = Image.open(io.BytesIO(data))
        check_format(image, data)
        image.load()  # GIF: the first frame only, as Ximilar does
        return to_rgb(ImageOps.exif_transpose(image))
    except ImageProblem:
        raise
    except Exception as error:  # Pillow raises many kinds for damaged files
        raise ImageProblem(f"could not decode image: {error}") from error


def check_format(image: Image.Image, data: bytes) -> None:
    """Refuse what Ximilar refuses, and decompression bombs, before any pixel
    is decoded. (A size check here, not warnings filters: those are process-wide
    and not thread-safe.)"""
    if image.width * image.height > MAX_PIXELS:
        raise ImageProblem(f"could not decode image: more than {MAX_PIXELS} pixels")
    name = image.format or "unknown"
    if name not in ACCEPTED_FORMATS:
        raise ImageProblem(f"unsupported image format: {name}")
    # pillow-heif calls HEIC and generic HEIF both "HEIF"; Ximilar takes only HEIC.
    if name == "HEIF" and data[8:12] not in HEIC_BRANDS:
        raise ImageProblem("unsupported image format: HEIF (only HEIC is accepted)")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels; transparent areas become white, as on a white page."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def unit_vector(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    if norm < 1e-9:  # a flat thumbnail has no structure to compare
        return [0.0] * len(values)
    return [v / norm for v in values]


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    data = image.tobytes()
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]


class Picture:
    """A decoded image plus cached measurements of a small copy of it."""

    def __init__(self, image: Image.Image):
        self.width, self.height = image.size
        self.image = image.copy()
        self.image.thumbnail((ANALYSIS_SIZE, ANALYSIS_SIZE), Image.Resampling.BOX)

    @cached_property
    def features(self) -> list[float]:
        """Structure (a normalised grayscale thumbnail) followed by colour
        (the square root of a colour histogram). Both halves have unit length,
        so re-encoding or resizing moves the vector a little and a different
        picture moves it a lot."""
        return self._structure() + self._colour_histogram()

    def _structure(self) -> list[float]:
        gray = self.image.convert("L").resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX)
        values = list(gray.tobytes())
        mean = sum(values) / len(values)
        return unit_vector([v - mean for v in values])

    def _colour_histogram(self) -> list[float]:
        small = self.image.resize((64, 64), Image.Resampling.BOX)
        step = 256 // HISTOGRAM_LEVELS
        counts = [0] * HISTOGRAM_LEVELS**3
        for r, g, b in pixels(small):
            index = (r // step) * HISTOGRAM_LEVELS**2 + (g // step) * HISTOGRAM_LEVELS + b // step
            counts[index] += 1
        total = sum(counts)
        return [math.sqrt(c / total) for c in counts]

    @cached_property
    def gray(self) -> Image.Image:
        return self.image.convert("L")

    @cached_property
    def luma(self) -> tuple[float, float]:
        """Mean and standard deviation of the gray levels (0-255)."""
        return band_mean_and_stddev(self.gray.histogram())

    @property
    def brightness(self) -> float:
        """Mean luma, 0 (black) to 1 (white)."""
        return self.luma[0] / 255

    @property
    def contrast(self) -> float:
        """Standard deviation of luma, 0 (flat) to about 1 (half black, half white)."""
        return self.luma[1] / 127.5

    @cached_property
    def saturation(self) -> float:
        """Mean HSV saturation, 0 (gray) to 1 (pure colours)."""
        saturation = self.image.convert("HSV").getchannel("S")
        return band_mean_and_stddev(saturation.histogram())[0] / 255

    @cached_property
    def edge_density(self) -> float:
        """Mean edge strength, 0 for a flat image; photos are typically 0.03-0.15."""
        edges = self.gray.filter(ImageFilter.FIND_EDGES)
        # The filter leaves a one-pixel frame; it is not part of the picture.
        inner = edges.crop((1, 1, max(2, edges.width - 1), max(2, edges.height - 1)))
        return band_mean_and_stddev(inner.histogram())[0] / 255

    @cached_property
    def background(self) -> tuple[int, int, int] | None:
        """The colour of a plain background: the border's median colour when
        at least 80% of the border is close to it, else None."""
        border = border_pixels(self.image)
        median = tuple(sorted(channel)[len(channel) // 2] for channel in zip(*border, strict=True))
        close = sum(1 for p in border if colour_distance(p, median) < 40)
        return median if close >= 0.8 * len(border) else None

    @cached_property
    def foreground_mask(self) -> Image.Image | None:
        """White where the pixels differ from the plain background, or None."""
        if self.background is None:
            return None
        plain = Image.new("RGB", self.image.size, self.background)
        difference = ImageChops.difference(self.image, plain).convert("L")
        return difference.point(lambda value: 255 if value > 30 else 0)

    @cached_property
    def object_box(self) -> list[int] | None:
        """[x1, y1, x2, y2] of the non-background area in original pixels."""
        if self.foreground_mask is None:
            return None
        box = self.foreground_mask.getbbox()
        if box is None:
            return None
        sx, sy = self.width / self.image.width, self.height / self.image.height
        x1, y1, x2, y2 = box
        return [round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy)]


def band_mean_and_stddev(histogram: list[int]) -> tuple[float, float]:
    """What ImageStat.Stat gives for one 256-level band, from its histogram,
    with the sums in C (ImageStat loops in Python: a third of a request)."""
    count = sum(histogram) or 1
    mean = sum(map(operator.mul, histogram, LEVELS)) / count
    variance = sum(map(operator.mul, histogram, SQUARED_LEVELS)) / count - mean * mean
    return mean, math.sqrt(max(variance, 0.0))


LEVELS = range(256)
SQUARED_LEVELS = [level * level for level in LEVELS]


def border_pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    width, height = image.size
    strips = [
        image.crop((0, 0, width, 1)),
        image.crop((0, height - 1, width, height)),
        image.crop((0, 0, 1, height)),
        image.crop((width - 1, 0, width, height)),
    ]
    return [p for strip in strips for p in pixels(strip)]


def colour_distance(a, b) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))


def feature_distance(a: list[float], b: list[float]) -> float:
    """Euclidean distance scaled to roughly 0 (same image) .. 100 (unrelated),
    the range Ximilar's examples show."""
    return 50.0 * math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)))
