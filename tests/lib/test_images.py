import concurrent.futures
import contextlib
import io
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, JpegImagePlugin

from ximilar_portal.lib import images
from ximilar_portal.lib.images import (
    ALLOWED_FORMATS,
    ImageBusy,
    ImageInfo,
    ImageRejected,
    decode_slot,
    inspect_image,
    make_thumbnail,
    sha256_hex,
    shrink_for_api,
)

from ..imagefiles import encode, one_bit_png

# Pillow format names to save with, per format we expect to be detected.
SAVE_AS = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "HEIC": "HEIF",  # pillow-heif (x265 is installed) writes brand "heic"
    "BMP": "BMP",
    "TIFF": "TIFF",
    "GIF": "GIF",
}


def picture(size=(64, 48), mode="RGB", color="red"):
    return Image.new(mode, size, color)


def ftyp(major, *compatible):
    brands = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(brands)) + b"ftyp" + brands + bytes(64)


def rejection(data, **limits):
    with pytest.raises(ImageRejected) as error:
        inspect_image(data, **limits)
    assert str(error.value) == error.value.message
    return error.value.message


def opened(data):
    return Image.open(io.BytesIO(data))


# Accepted formats


@pytest.mark.parametrize("image_format", sorted(SAVE_AS))
def test_it_accepts_each_allowed_format(image_format):
    info = inspect_image(encode(picture(), SAVE_AS[image_format]))
    assert info.format == image_format
    assert info.format in ALLOWED_FORMATS
    assert (info.width, info.height) == (64, 48)
    assert not info.first_frame_only
    assert info.mime.startswith("image/")
    assert info.extension.startswith(".")


def test_it_reports_mime_and_extension():
    assert inspect_image(encode(picture(), "JPEG")) == ImageInfo(
        "JPEG", "image/jpeg", 64, 48, False, ".jpg"
    )
    heic = inspect_image(encode(picture(), "HEIF"))
    assert (heic.mime, heic.extension) == ("image/heic", ".heic")


def test_it_accepts_jfif_and_cmyk_jpeg():
    jfif = encode(picture(), "JPEG", dpi=(72, 72))
    assert b"JFIF" in jfif[:20]
    assert inspect_image(jfif).format == "JPEG"
    assert inspect_image(encode(picture(mode="CMYK"), "JPEG")).format == "JPEG"


def test_it_ignores_what_the_name_would_say():
    # There is no name to go by: a PNG is a PNG whatever it was uploaded as.
    assert inspect_image(encode(picture(), "PNG")).extension == ".png"


def test_it_marks_animated_gifs_first_frame_only():
    frames = [picture(color=color) for color in ("red", "green", "blue")]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert inspect_image(animated).first_frame_only
    assert not inspect_image(encode(frames[0], "GIF")).first_frame_only


def test_it_accepts_a_png_with_html_appended():
    # Documented choice: the original bytes are only served as image/png with
    # nosniff and a sandbox CSP, so the appended page is never rendered.
    data = encode(picture(), "PNG") + b"<html><script>alert(1)</script></html>"
    assert inspect_image(data).format == "PNG"


# Refused formats


@pytest.mark.parametrize(
    ("pillow_format", "named"),
    [("AVIF", "AVIF"), ("JPEG2000", "JPEG 2000"), ("PDF", "PDF"), ("ICO", "ICO")],
)
def test_it_refuses_formats_pillow_can_write(pillow_format, named):
    options = {"irreversible": True} if pillow_format == "JPEG2000" else {}
    message = rejection(encode(picture(), pillow_format, **options))
    assert named in message
    assert "JPEG, PNG, WEBP, HEIC, BMP or TIFF" in message


def test_it_refuses_a_raw_jpeg_2000_codestream():
    j2k = encode(picture(), "JPEG2000", no_jp2=True)
    assert j2k.startswith(b"\xff\x4f\xff\x51")
    assert "JPEG 2000" in rejection(j2k)


@pytest.mark.parametrize(
    ("data", "named"),
    [
        (ftyp(b"avif", b"mif1", b"miaf"), "AVIF"),
        (ftyp(b"avis", b"msf1"), "AVIF"),
        (ftyp(b"mif1", b"avif"), "AVIF"),
        (ftyp(b"mif1", b"miaf"), "HEIF"),
        (ftyp(b"msf1", b"miaf"), "HEIF"),
        (ftyp(b"isom", b"mp41"), "ISO media"),
        (b"8BPS\x00\x01" + bytes(40), "PSD"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(20), "JPEG 2000"),
        (b"<html><body>hi</body></html>", "HTML"),
        (b"\xef\xbb\xbf  <!DOCTYPE html><p>hi", "HTML"),
        (b"<?xml version='1.0'?><note/>", "XML"),
        (b"GIF90a" + bytes(20), "not an image"),
        (b"just some text", "not an image"),
        (bytes(100), "not an image"),
    ],
)
def test_it_refuses_crafted_headers(data, named):
    assert named in rejection(data)


def test_it_refuses_svg_with_a_script():
    svg = b"""<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">
<script>alert(document.cookie)</script><rect width="10" height="10"/></svg>"""
    assert "SVG" in rejection(svg)
    assert "SVG" in rejection(svg.split(b"\n", 1)[1])


def test_it_refuses_a_zip():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("image.jpg", encode(picture(), "JPEG"))
    assert "ZIP" in rejection(out.getvalue())


def test_it_refuses_heif_that_is_not_heic():
    heic = encode(picture(), "HEIF")
    assert heic[4:12] == b"ftypheic"
    generic = heic[:8] + b"mif1" + heic[12:]
    assert "HEIF" in rejection(generic)


def test_it_refuses_empty_and_oversized_files():
    assert rejection(b"") == "The file is empty."
    message = rejection(encode(picture(), "BMP"), max_bytes=1000)
    assert "1000" not in message  # said in MB, for people
    assert "MB" in message


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF", "TIFF", "HEIC"])
def test_it_refuses_truncated_files(image_format):
    noisy = Image.effect_noise((200, 150), 60).convert("RGB")
    data = encode(noisy, SAVE_AS[image_format])
    message = rejection(data[: len(data) * 2 // 3])
    assert message == "The image file is damaged or truncated."


# Sizes


def test_it_refuses_a_30000_square_png_bomb_quickly():
    bomb = one_bit_png(30000, 30000)
    assert len(bomb) < 200_000
    started = time.perf_counter()
    message = rejection(bomb)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0
    assert "too large" in message
    assert "64,000,000" in message


def test_it_refuses_too_many_pixels_with_the_numbers():
    # 9000 × 8000 is over the 64M default but under Pillow's own guard, so this
    # is the portal's check, made from the header before decoding.
    message = rejection(one_bit_png(9000, 8000))
    assert "9000 × 8000" in message
    assert "72,000,000" in message
    assert "64,000,000" in message


def test_it_uses_the_callers_pixel_limit():
    assert "the limit is 1,000 pixels" in rejection(encode(picture(), "PNG"), max_pixels=1000)


@pytest.mark.parametrize("image_format", ["GIF", "BMP"])
def test_it_refuses_huge_dimensions_in_a_tiny_file(image_format):
    data = encode(picture((2, 2)), image_format)
    if image_format == "GIF":  # logical screen and image descriptor sizes
        data = data.replace(struct.pack("<HH", 2, 2), struct.pack("<HH", 65000, 65000))
    else:  # BITMAPINFOHEADER width and height
        data = data[:18] + struct.pack("<ii", 50000, 50000) + data[26:]
    assert len(data) < 200
    assert "too large" in rejection(data)


# Thumbnails


def thumbnail_of(data, **options):
    result = opened(make_thumbnail(data, **options))
    assert result.format == "WEBP"
    return result.convert("RGB")


def close_to(color, expected, tolerance=12):
    return all(abs(a - b) <= tolerance for a, b in zip(color, expected, strict=True))


@pytest.mark.parametrize("image_format", sorted(SAVE_AS))
def test_it_thumbnails_each_format(image_format):
    thumbnail = thumbnail_of(encode(picture((1000, 500)), SAVE_AS[image_format]))
    assert thumbnail.size == (320, 160)
    assert close_to(thumbnail.getpixel((160, 80)), (255, 0, 0), tolerance=40)


def test_it_thumbnails_to_the_requested_size_without_enlarging():
    assert thumbnail_of(encode(picture((800, 1600)), "JPEG"), size=100).size == (50, 100)
    assert thumbnail_of(encode(picture((40, 30)), "PNG")).size == (40, 30)


def test_it_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to show
    for pillow_format in ("JPEG", "PNG", "WEBP", "TIFF", "HEIF"):
        data = encode(picture((64, 32)), pillow_format, exif=exif.tobytes())
        assert thumbnail_of(data).size == (32, 64), pillow_format


@pytest.mark.parametrize(
    "exif", [b"Exif\x00\x00garbage that is not a TIFF header", b"Exif\x00\x00MM\x00*\xff\xff"]
)
def test_it_tolerates_corrupt_exif(exif):
    data = encode(picture((64, 32)), "JPEG", exif=exif)
    assert inspect_image(data).format == "JPEG"
    assert thumbnail_of(data).size == (64, 32)


def test_it_ignores_an_impossible_orientation():
    exif = Image.Exif()
    exif[0x0112] = 42
    assert thumbnail_of(encode(picture((64, 32)), "JPEG", exif=exif.tobytes())).size == (64, 32)


def test_it_converts_cmyk():
    cmyk_red = (0, 255, 255, 0)
    thumbnail = thumbnail_of(encode(picture(mode="CMYK", color=cmyk_red), "JPEG"))
    assert close_to(thumbnail.getpixel((5, 5)), (255, 0, 0), tolerance=30)


def test_it_scales_16_bit_gray_instead_of_clipping_it():
    data = encode(Image.new("I;16", (40, 30), 32768), "PNG")
    assert opened(data).mode.startswith("I")
    gray = thumbnail_of(data).getpixel((5, 5))
    assert close_to(gray, (128, 128, 128), tolerance=4)


@pytest.mark.parametrize(
    ("mode", "color", "pillow_format", "options"),
    [
        ("RGBA", (255, 0, 0, 0), "PNG", {}),
        ("LA", (0, 0), "PNG", {}),
        ("RGBA", (0, 0, 255, 0), "WEBP", {"lossless": True}),
        ("P", 0, "GIF", {"transparency": 0}),
        ("P", 0, "PNG", {"transparency": 0}),
        ("RGB", (0, 0, 0), "PNG", {"transparency": (0, 0, 0)}),
    ],
)
def test_it_puts_transparency_on_white(mode, color, pillow_format, options):
    data = encode(picture((40, 30), mode, color), pillow_format, **options)
    assert close_to(thumbnail_of(data).getpixel((5, 5)), (255, 255, 255))


def test_it_thumbnails_the_first_frame_of_a_gif():
    frames = [picture(color=color) for color in ("red", "green", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert close_to(thumbnail_of(data).getpixel((5, 5)), (255, 0, 0), tolerance=20)


def test_thumbnail_refuses_what_inspect_refuses():
    with pytest.raises(ImageRejected):
        make_thumbnail(encode(picture(), "AVIF"))
    with pytest.raises(ImageRejected):
        make_thumbnail(b"")
    data = encode(Image.effect_noise((200, 150), 60).convert("RGB"), "PNG")
    with pytest.raises(ImageRejected):
        make_thumbnail(data[: len(data) // 2])


# Sending to Ximilar


def test_shrink_leaves_small_images_alone():
    data = encode(picture((500, 2000)), "PNG")
    assert shrink_for_api(data, 600) is data
    assert shrink_for_api(data, 0) is data


def test_shrink_makes_the_shorter_side_match():
    shrunk = opened(shrink_for_api(encode(picture((1600, 1200)), "PNG"), 800))
    assert (shrunk.format, shrunk.mode, shrunk.size) == ("JPEG", "RGB", (1067, 800))


def test_shrink_applies_orientation_and_flattens_transparency():
    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode(picture((1600, 1200), "RGBA", (0, 0, 0, 0)), "PNG", exif=exif.tobytes())
    shrunk = opened(shrink_for_api(data, 600))
    assert shrunk.size == (600, 800)
    assert close_to(shrunk.getpixel((5, 5)), (255, 255, 255))


# Bounded decoding


@pytest.fixture
def decodes_at_once(monkeypatch):
    """The most decodes seen at the same moment, counted inside the decode slot."""
    lock, inside, most = threading.Lock(), [0], [0]
    load = images._load_reduced

    def counted(image, size):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.05)  # hold the slot, so that the other threads pile up behind it
            load(image, size)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(images, "_load_reduced", counted)
    return most


def test_decodes_never_exceed_the_per_process_bound(decode_slots, decodes_at_once):
    decode_slots(2)
    png = encode(picture((900, 700), color="blue"), "PNG")
    jpeg = encode(picture((900, 700), color="blue"), "JPEG")
    calls = [
        lambda: inspect_image(png).thumbnail,
        lambda: make_thumbnail(jpeg),
        lambda: shrink_for_api(png, 300),
    ] * 8
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        outputs = list(pool.map(lambda call: call(), calls))
    assert all(outputs)
    assert 1 <= decodes_at_once[0] <= 2


def test_a_decode_that_gets_no_slot_in_time_is_busy_not_rejected(decode_slots):
    decode_slots(1)
    data = encode(picture(), "PNG")
    with decode_slot():
        with pytest.raises(ImageBusy) as busy:
            inspect_image(data, wait=0.05)
        with pytest.raises(ImageBusy):
            make_thumbnail(data, wait=0)
    assert busy.value.retry_after >= 1
    assert not isinstance(busy.value, ImageRejected)
    assert inspect_image(data, wait=0.05).thumbnail  # the slot is free again


def test_a_header_refusal_needs_no_decode_slot(decode_slots):
    decode_slots(1)
    with decode_slot():
        assert "limit" in rejection(one_bit_png(9000, 8000))


def test_a_decode_takes_the_slots_its_memory_needs_all_at_once(decode_slots):
    decode_slots(2, slot_pixels=10_000)
    big, small = encode(picture((120, 100)), "PNG"), encode(picture((50, 50)), "PNG")
    with decode_slot():  # one of the two slots is taken
        with pytest.raises(ImageBusy):
            inspect_image(big, wait=0.05)  # 12,000 pixels: two slots
        assert inspect_image(small, wait=0.05).thumbnail  # 2,500 pixels: one slot
    assert inspect_image(big, wait=0.05).thumbnail


def test_a_format_that_decodes_into_several_copies_has_a_lower_pixel_limit(decode_slots):
    decode_slots(2, slot_pixels=10_000)
    message = rejection(encode(picture((120, 100)), "WEBP"))  # 4 copies: 48,000 > 20,000
    assert "WEBP" in message and "5,000 pixels" in message
    assert inspect_image(encode(picture((70, 70)), "WEBP")).thumbnail
    assert inspect_image(encode(picture((120, 100)), "PNG")).thumbnail


def test_the_engine_waits_for_a_slot_instead_of_failing(decode_slots):
    decode_slots(1)
    data = encode(picture((1200, 900)), "JPEG")
    shrunk = []
    with decode_slot():
        waiting = threading.Thread(target=lambda: shrunk.append(shrink_for_api(data, 300)))
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and not shrunk  # it cannot decode while the slot is held
    waiting.join(60)
    assert opened(shrunk[0]).size == (400, 300)


@pytest.fixture
def jpeg_decoded_sizes(monkeypatch):
    sizes = []
    load = JpegImagePlugin.JpegImageFile.load

    def recorded(self):
        pixels = load(self)
        sizes.append(self.size)
        return pixels

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", recorded)
    return sizes


def test_a_jpeg_is_checked_and_thumbnailed_at_a_reduced_scale(jpeg_decoded_sizes):
    data = encode(picture((4000, 3000)), "JPEG")
    info = inspect_image(data)
    assert (info.width, info.height) == (4000, 3000)
    assert opened(info.thumbnail).size == (320, 240)
    assert jpeg_decoded_sizes and all(w <= 1000 and h <= 750 for w, h in jpeg_decoded_sizes)


def test_a_jpeg_shrinks_from_a_reduced_decode(jpeg_decoded_sizes):
    data = encode(picture((4000, 3000)), "JPEG")
    assert opened(shrink_for_api(data, 600)).size == (800, 600)
    assert jpeg_decoded_sizes and all(w < 4000 and h < 3000 for w, h in jpeg_decoded_sizes)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_reducing_by_bands_gives_what_pillow_gives_for_the_whole_image(monkeypatch, mode):
    noise = Image.effect_noise((1203, 957), 80)
    image = Image.merge(mode, [noise, noise.rotate(90), noise.transpose(0), noise][: len(mode)])
    monkeypatch.setattr(images, "BAND_BYTES", 1)  # as many bands as the factor allows
    for factors in [(3, 2), (4, 4), (5, 7)]:
        assert images._reduced_by_bands(image, factors).tobytes() == image.reduce(factors).tobytes()
    expected = image.copy()
    expected.thumbnail((320, 320), Image.Resampling.LANCZOS)
    ours = images._upright_rgb(image, (320, 320))
    assert ours.tobytes() == images._flatten_on_white(expected).tobytes()


def test_the_largest_accepted_png_costs_one_decoded_image_of_memory():
    """In a fresh process: the peak RSS an 8000 × 7999 RGBA check and
    thumbnail add is one decoded image (4 bytes a pixel), not two or three."""
    script = """
import resource, sys
from tests.imagefiles import flat_rgba_png
from ximilar_portal.lib.images import inspect_image
data = flat_rgba_png(8000, 7999)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
info = inspect_image(data)
assert info.thumbnail and (info.width, info.height) == (8000, 7999)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    decoded = 8000 * 7999 * 4
    assert int(done.stdout) < 1.25 * decoded


def test_sha256_hex():
    assert sha256_hex(b"abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


# Hostile input never escapes as another exception


PREFIXES = [
    b"",
    b"\xff\xd8\xff\xe0",
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    b"<svg",
]
VALID = [encode(picture((16, 16)), SAVE_AS[name]) for name in sorted(SAVE_AS)]


def assert_only_rejected(data):
    """Any exception other than ImageRejected fails the test."""
    with contextlib.suppress(ImageRejected):
        inspect_image(data)
    with contextlib.suppress(ImageRejected):
        make_thumbnail(data)


@settings(max_examples=300, deadline=2000, database=None)
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=2048))
def test_random_bytes_only_ever_raise_image_rejected(prefix, tail):
    data = prefix + tail
    assert_only_rejected(data)


@settings(max_examples=300, deadline=2000, database=None)
@given(
    valid=st.sampled_from(VALID),
    position=st.integers(min_value=0, max_value=400),
    junk=st.binary(min_size=1, max_size=16),
)
def test_corrupted_images_only_ever_raise_image_rejected(valid, position, junk):
    position = min(position, len(valid))
    data = valid[:position] + junk + valid[position + len(junk) :]
    assert_only_rejected(data)
