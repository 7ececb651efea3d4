"""Naming colours: the nearest CSS3 colour keyword, and Ximilar's "simple"
palette of twelve names (black, grey, white, red, pink, orange, yellow, green,
blue, purple, brown, beige).

There is no Pantone table here: Pantone's colour data is licensed, and a
made-up mapping would look authoritative while being wrong, so the sandbox
leaves `pantone_names` out.
"""

import colorsys
from functools import lru_cache

CSS3_COLOURS = {
    "aliceblue": "f0f8ff", "antiquewhite": "faebd7", "aqua": "00ffff", "aquamarine": "7fffd4",
    "azure": "f0ffff", "beige": "f5f5dc", "bisque": "ffe4c4", "black": "000000",
    "blanchedalmond": "ffebcd", "blue": "0000ff", "blueviolet": "8a2be2", "brown": "a52a2a",
    "burlywood": "deb887", "cadetblue": "5f9ea0", "chartreuse": "7fff00", "chocolate": "d2691e",
    "coral": "ff7f50", "cornflowerblue": "6495ed", "cornsilk": "fff8dc", "crimson": "dc143c",
    "darkblue": "00008b", "darkcyan": "008b8b", "darkgoldenrod": "b8860b",
    "darkgray": "a9a9a9", "darkgreen": "006400", "darkkhaki": "bdb76b", "darkmagenta": "8b008b",
    "darkolivegreen": "556b2f", "darkorange": "ff8c00", "darkorchid": "9932cc",
    "darkred": "8b0000", "darksalmon": "e9967a", "darkseagreen": "8fbc8f",
    "darkslateblue": "483d8b", "darkslategray": "2f4f4f", "darkturquoise": "00ced1",
    "darkviolet": "9400d3", "deeppink": "ff1493", "deepskyblue": "00bfff", "dimgray": "696969",
    "dodgerblue": "1e90ff", "firebrick": "b22222", "floralwhite": "fffaf0",
    "forestgreen": "228b22", "fuchsia": "ff00ff", "gainsboro": "dcdcdc", "ghostwhite": "f8f8ff",
    "gold": "ffd700", "goldenrod": "daa520", "gray": "808080", "green": "008000",
    "greenyellow": "adff2f", "honeydew": "f0fff0", "hotpink": "ff69b4", "indianred": "cd5c5c",
    "indigo": "4b0082", "ivory": "fffff0", "khaki": "f0e68c", "lavender": "e6e6fa",
    "lavenderblush": "fff0f5", "lawngreen": "7cfc00", "lemonchiffon": "fffacd",
    "lightblue": "add8e6", "lightcoral": "f08080", "lightcyan": "e0ffff",
    "lightgoldenrodyellow": "fafad2", "lightgray": "d3d3d3", "lightgreen": "90ee90",
    "lightpink": "ffb6c1", "lightsalmon": "ffa07a", "lightseagreen": "20b2aa",
    "lightskyblue": "87cefa", "lightslategray": "778899", "lightsteelblue": "b0c4de",
    "lightyellow": "ffffe0", "lime": "00ff00", "limegreen": "32cd32", "linen": "faf0e6",
    "maroon": "800000", "mediumaquamarine": "66cdaa", "mediumblue": "0000cd",
    "mediumorchid": "ba55d3", "mediumpurple": "9370db", "mediumseagreen": "3cb371",
    "mediumslateblue": "7b68ee", "mediumspringgreen": "00fa9a", "mediumturquoise": "48d1cc",
    "mediumvioletred": "c71585", "midnightblue": "191970", "mintcream": "f5fffa",
    "mistyrose": "ffe4e1", "moccasin": "ffe4b5", "navajowhite": "ffdead", "navy": "000080",
    "oldlace": "fdf5e6", "olive": "808000", "olivedrab": "6b8e23", "orange": "ffa500",
    "orangered": "ff4500", "orchid": "da70d6", "palegoldenrod": "eee8aa", "palegreen": "98fb98",
    "paleturquoise": "afeeee", "palevioletred": "db7093", "papayawhip": "ffefd5",
    "peachpuff": "ffdab9", "peru": "cd853f", "pink": "ffc0cb", "plum": "dda0dd",
    "powderblue": "b0e0e6", "purple": "800080", "red": "ff0000", "rosybrown": "bc8f8f",
    "royalblue": "4169e1", "saddlebrown": "8b4513", "salmon": "fa8072", "sandybrown": "f4a460",
    "seagreen": "2e8b57", "seashell": "fff5ee", "sienna": "a0522d", "silver": "c0c0c0",
    "skyblue": "87ceeb", "slateblue": "6a5acd", "slategray": "708090", "snow": "fffafa",
    "springgreen": "00ff7f", "steelblue": "4682b4", "tan": "d2b48c", "teal": "008080",
    "thistle": "d8bfd8", "tomato": "ff6347", "turquoise": "40e0d0", "violet": "ee82ee",
    "wheat": "f5deb3", "white": "ffffff", "whitesmoke": "f5f5f5", "yellow": "ffff00",
    "yellowgreen": "9acd32",
}  # fmt: skip
# Aliases with the same value (cyan, magenta, grey spellings) are left out so
# that each value has one name.

SIMPLE_NAMES = (
    "black", "grey", "white", "red", "pink", "orange",
    "yellow", "green", "blue", "purple", "brown", "beige",
)  # fmt: skip

CZECH_COLOUR_NAMES = {
    "black": "černá", "grey": "šedá", "white": "bílá", "red": "červená", "pink": "růžová",
    "orange": "oranžová", "yellow": "žlutá", "green": "zelená", "blue": "modrá",
    "purple": "fialová", "brown": "hnědá", "beige": "béžová",
}  # fmt: skip


def hex_colour(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def to_lab(rgb) -> tuple[float, float, float]:
    """sRGB to CIE L*a*b* (D65), where plain distance follows what eyes see."""

    def linear(channel):
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t):
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    fx, fy, fz = f(x), f(y), f(z)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def lab_distance(a, b) -> float:
    return sum((x - y) ** 2 for x, y in zip(to_lab(a), to_lab(b), strict=True)) ** 0.5


@lru_cache(maxsize=4096)
def css3_name(rgb: tuple[int, int, int]) -> str:
    def distance(item):
        return lab_distance(rgb, bytes.fromhex(item[1]))

    return min(CSS3_COLOURS.items(), key=distance)[0]


def simple_name(rgb) -> str:
    """One of the twelve simple names, by hue, saturation and value."""
    hue, saturation, value = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    hue *= 360
    if value < 0.18:
        return "black"
    if saturation < 0.12 or (saturation < 0.2 and value < 0.35):
        return "white" if value > 0.88 else "grey"
    if 15 <= hue < 65 and saturation < 0.35 and value > 0.7:
        return "beige"
    if 10 <= hue < 45 and value < 0.7:
        return "brown"
    return hue_name(hue, saturation, value)


def hue_name(hue, saturation, value) -> str:
    if hue < 12 or hue >= 340:
        return "pink" if saturation < 0.5 and value > 0.75 else "red"
    for limit, name in ((45, "orange"), (70, "yellow"), (165, "green"), (255, "blue")):
        if hue < limit:
            return name
    return "purple" if hue < 320 else "pink"
