"""Dominant colours computed from the pixels.

Pillow's octree quantizer picks the initial palette and then refines it with
k-means (its `kmeans` argument), all in C, so this is real clustering without
numpy. Octree rather than median cut: median cut splits the box with the most
pixels, so JPEG noise in a large white background used up the palette while a
red and a blue object were averaged into one purple. The product variant
first drops a plain background, as Ximilar's product service is meant for
product shots on a plain background.
"""

from PIL import Image

from .imaging import Picture, pixels
from .palette import css3_name, hex_colour, lab_distance, simple_name

KMEANS_ITERATIONS = 10
SAME_COLOUR = 4.0  # L*a*b* distance under which two palette entries are one colour
MIN_SHARE = 0.005  # smaller clusters are noise (JPEG edges), not a colour of the image
MIN_FOREGROUND_SHARE = 0.02


def dominant_colours(picture: Picture, *, count: int, product: bool) -> dict:
    """`percentages` are fractions of the analysed pixels and sum to 1."""
    image = picture.image
    if product:
        image = foreground_only(picture) or image
    clusters = merge_close(quantize(image, count))
    clusters = [c for c in clusters if c[1] >= MIN_SHARE][:count]
    total = sum(share for _, share in clusters)
    colours = [rgb for rgb, _ in clusters]
    return {
        "rgb_colors": [list(rgb) for rgb in colours],
        "rgb_hex_colors": [hex_colour(rgb) for rgb in colours],
        "color_names": [css3_name(rgb) for rgb in colours],
        "color_names_simple": [simple_name(rgb) for rgb in colours],
        "percentages": [round(share / total, 4) for _, share in clusters],
        # pantone_names: omitted on purpose, see palette.py.
    }


def quantize(image: Image.Image, count: int) -> list[tuple[tuple[int, int, int], float]]:
    """[(rgb, share)] for up to `count` clusters, largest first."""
    quantized = image.quantize(
        colors=count, method=Image.Quantize.FASTOCTREE, kmeans=KMEANS_ITERATIONS
    )
    palette = quantized.getpalette() or []
    used = quantized.getcolors(maxcolors=256) or []
    pixel_count = image.width * image.height
    clusters = [(tuple(palette[3 * i : 3 * i + 3]), n / pixel_count) for n, i in used]
    return sorted(clusters, key=lambda cluster: cluster[1], reverse=True)


def merge_close(clusters):
    """The quantizer can split one flat colour in two; join entries that look alike."""
    merged = []
    for rgb, share in clusters:
        for index, (kept_rgb, kept_share) in enumerate(merged):
            if lab_distance(rgb, kept_rgb) < SAME_COLOUR:
                merged[index] = (kept_rgb, kept_share + share)
                break
        else:
            merged.append((rgb, share))
    return sorted(merged, key=lambda cluster: cluster[1], reverse=True)


def foreground_only(picture: Picture) -> Image.Image | None:
    """The pixels that are not plain background, as a one-row image, or None
    when there is no plain background or almost nothing in front of it."""
    mask = picture.foreground_mask
    if mask is None:
        return None
    flags = mask.tobytes()
    kept = [p for p, flag in zip(pixels(picture.image), flags, strict=True) if flag]
    if len(kept) < MIN_FOREGROUND_SHARE * len(flags):
        return None
    data = bytes(channel for pixel in kept for channel in pixel)
    return Image.frombytes("RGB", (len(kept), 1), data)
