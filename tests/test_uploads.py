"""Many files, one request each: a corpus of hostile and awkward inputs through
the upload endpoint, request-level caps, duplicates, and Hypothesis bytes.
Whatever comes in: no 5xx, a clear message, and nothing stored that is not a
re-checked image under a generated name."""

import io
import struct
import zipfile

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from PIL import Image

from ximilar_portal.lib.images import decode_slot, inspect_image
from ximilar_portal.records.models import BatchItem, Record, UploadBatch

from .conftest import client_for, jpeg_bytes
from .imagefiles import encode, flat_rgba_png, png_header_only

pytestmark = pytest.mark.django_db


# --- Building the corpus -------------------------------------------------------------------


def zip_bytes():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("a.txt", "hello")
    return out.getvalue()


def iso_media(brand):
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1"


def gif_animated():
    frames = [Image.new("RGB", (20, 20), color) for color in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50)
    return out.getvalue()


def corrupt_exif_jpeg():
    data = jpeg_bytes()
    app1 = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff" + b"\x01" * 20
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]


def oriented_jpeg():
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


JPEG = jpeg_bytes()
PNG = jpeg_bytes(fmt="PNG")
PIXEL_CAP = 1_000_000  # lowered in these tests so bombs stay small and fast

# (file name, bytes, words the message must contain)
REJECTED = [
    ("empty.jpg", b"", "empty"),
    ("truncated.jpg", JPEG[: len(JPEG) // 2], "damaged"),
    ("truncated-header.png", PNG[:20], "damaged"),
    ("only-signature.jpg", b"\xff\xd8\xff", "damaged"),
    ("text.jpg", b"just some text", "not an image"),
    ("page.html", b"<!doctype html><html><body>hi</body></html>", "HTML"),
    ("page.jpg", b"<html><script>alert(1)</script></html>", "HTML"),
    ("bom-page.png", b"\xef\xbb\xbf  <html><body>x</body></html>", "HTML"),
    ("script.gif", b"<script>alert(1)</script>", "HTML"),
    (
        "image.svg",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        "SVG",
    ),
    ("xml-svg.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ("feed.xml", b'<?xml version="1.0"?><rss></rss>', "XML"),
    ("doc.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF"),
    ("doc.jpg", b"%PDF-1.4\n", "PDF"),
    ("print.ps", b"%!PS-Adobe-3.0\n", "PostScript"),
    ("archive.zip", zip_bytes(), "ZIP"),
    ("archive.jpg", zip_bytes(), "ZIP"),
    ("photo.psd", b"8BPS\x00\x01" + b"\x00" * 40, "Photoshop"),
    ("photo.jp2", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40, "JPEG 2000"),
    ("codestream.j2k", b"\xff\x4f\xff\x51" + b"\x00" * 40, "JPEG 2000"),
    ("photo.jxl", b"\xff\x0a" + b"\x00" * 40, "JPEG XL"),
    ("icon.ico", b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 40, "ICO"),
    ("photo.avif", iso_media(b"avif"), "AVIF"),
    ("photo.heif", iso_media(b"mif1"), "HEIF"),
    ("clip.mp4", iso_media(b"isom"), "Video"),
    ("bomb-1x.png", png_header_only(1001, 1000), "limit"),
    ("bomb-2x.png", png_header_only(2001, 1000), "limit"),
    ("huge-dims.png", png_header_only(30000, 30000), "limit"),
    ("wide.png", png_header_only(2**31 - 1, 1), "limit"),
    ("zero.png", png_header_only(0, 0), "damaged"),
    ("bad-ihdr.png", PNG[:16] + b"\xff" * 30 + PNG[46:], "damaged"),
    ("gif-header.gif", b"GIF89a\x10\x00\x10\x00", "damaged"),
    ("bmp-header.bmp", b"BM" + b"\x00" * 20, "damaged"),
    ("tiff-header.tiff", b"II*\x00\x08\x00\x00\x00", "damaged"),
    ("webp-header.webp", b"RIFF\x10\x00\x00\x00WEBPVP8 ", "damaged"),
    ("exe.jpg", b"MZ\x90\x00\x03\x00\x00\x00", "not an image"),
    ("elf.png", b"\x7fELF\x02\x01\x01", "not an image"),
    ("php.jpg", b"<?php system($_GET['c']); ?>", "XML or markup"),
    ("nul.jpg", b"\x00" * 64, "not an image"),
]

# Odd but valid images: stored, as the image they are, under a generated name.
ACCEPTED = [
    ("cmyk.jpg", encode(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG"), "JPEG"),
    ("deep.png", encode(Image.new("I;16", (30, 20), 40000), "PNG"), "PNG"),
    ("palette.png", encode(Image.new("P", (30, 20), 3), "PNG"), "PNG"),
    ("transparent.png", encode(Image.new("RGBA", (30, 20), (0, 0, 0, 0)), "PNG"), "PNG"),
    ("animated.gif", gif_animated(), "GIF"),
    ("corrupt-exif.jpg", corrupt_exif_jpeg(), "JPEG"),
    ("rotated.jpg", oriented_jpeg(), "JPEG"),
    ("html-after.png", PNG + b"<html><script>alert(1)</script></html>", "PNG"),
    ("../../etc/passwd", jpeg_bytes(color=(1, 2, 3)), "JPEG"),
    ("a.php.jpg", jpeg_bytes(color=(4, 5, 6)), "JPEG"),
    ("<img src=x onerror=alert(1)>.png", jpeg_bytes(color=(7, 8, 9), fmt="PNG"), "PNG"),
    ("wrong-extension.gif", jpeg_bytes(color=(9, 9, 9)), "JPEG"),
    ("photo.bmp", encode(Image.new("RGB", (30, 20), "blue"), "BMP"), "BMP"),
    ("photo.tiff", encode(Image.new("RGB", (30, 20), "green"), "TIFF"), "TIFF"),
    ("photo.webp", encode(Image.new("RGB", (30, 20), "navy"), "WEBP"), "WEBP"),
]


@pytest.fixture
def batch(owner, team):
    return UploadBatch.objects.create(team=team, created_by=owner, kind="files")


@pytest.fixture
def small_caps(settings):
    settings.IMAGE_MAX_PIXELS = PIXEL_CAP
    settings.UPLOAD_MAX_BYTES = 200_000


def send(client, batch, name, content, **extra):
    upload = SimpleUploadedFile(name, content, content_type="image/jpeg")
    return client.post(f"/records/batches/{batch.pk}/files/", {"file": upload, **extra})


def assert_stored_images_are_clean():
    for record in Record.objects.all():
        name = record.image.name
        assert name.startswith(f"records/{record.team_id}/"), name
        assert name.endswith(record.image_extension)
        stem = name.rsplit("/", 1)[1].split(".")[0]
        assert len(stem) == 32 and all(c in "0123456789abcdef" for c in stem), name
        with record.image.open("rb") as stored:
            info = inspect_image(stored.read(), max_pixels=PIXEL_CAP)
        assert info.format == record.image_format
        assert record.thumbnail.name.endswith(".webp")


def test_the_corpus_is_big_enough():
    assert len(REJECTED) + len(ACCEPTED) + 3 >= 40  # + oversize, 101 files, two files


@pytest.mark.parametrize(("name", "content", "words"), REJECTED, ids=[r[0] for r in REJECTED])
def test_it_rejects_bad_input_with_a_clear_message(owner, batch, small_caps, name, content, words):
    response = send(client_for(owner), batch, name, content)
    assert response.status_code == 422
    answer = response.json()
    assert answer["status"] == "rejected"
    assert words.lower() in answer["message"].lower(), answer["message"]
    assert not Record.objects.exists()
    item = BatchItem.objects.get()
    assert (item.status, item.message) == ("rejected", answer["message"])


@pytest.mark.parametrize(("name", "content", "fmt"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_it_stores_awkward_valid_images_safely(owner, batch, small_caps, name, content, fmt):
    response = send(client_for(owner), batch, name, content)
    assert response.status_code == 201, response.content
    record = Record.objects.get()
    assert record.image_format == fmt
    assert record.first_frame_only == (name == "animated.gif")
    assert name not in record.image.name and "passwd" not in record.image.name
    assert_stored_images_are_clean()
    image = client_for(owner).get(f"/records/{record.pk}/image/")
    assert image["X-Content-Type-Options"] == "nosniff"
    assert image["Content-Type"].startswith("image/")
    image.close()


def test_an_animated_gif_says_only_its_first_frame_is_used(owner, batch):
    send(client_for(owner), batch, "a.gif", gif_animated())
    record = Record.objects.get()
    page = client_for(owner).get(f"/records/{record.pk}/").content.decode()
    assert "only the first frame is used" in page


def test_an_oversize_file_is_cut_off_with_a_clear_message(owner, batch, settings):
    settings.UPLOAD_MAX_BYTES = 50_000
    big = encode(Image.effect_noise((400, 400), 100).convert("RGB"), "PNG")
    assert len(big) > 50_000
    response = send(client_for(owner), batch, "big.png", big)
    assert response.status_code == 400
    assert "larger than" in response.json()["message"]
    assert not Record.objects.exists()


def test_the_largest_accepted_png_is_stored_with_a_correct_thumbnail(owner, batch):
    data = flat_rgba_png(8000, 7999, (30, 120, 200, 255))  # 63,992,000 pixels, about 250 kB
    response = send(client_for(owner), batch, "large.png", data)
    assert response.status_code == 201, response.json()
    record = Record.objects.get()
    assert (record.image_format, record.width, record.height) == ("PNG", 8000, 7999)
    assert record.preview == "ready"
    with record.thumbnail.open("rb") as stored:
        thumbnail = Image.open(io.BytesIO(stored.read()))
        thumbnail.load()
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (320, 320))
    colour = thumbnail.convert("RGB").getpixel((160, 160))
    assert all(abs(a - b) <= 12 for a, b in zip(colour, (30, 120, 200), strict=True))


def stored_files():
    root = settings.MEDIA_ROOT
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def test_an_upload_that_gets_no_decode_slot_answers_503_and_stores_nothing(
    owner, batch, decode_slots, settings
):
    settings.IMAGE_DECODE_WAIT = 0.05
    decode_slots(1)
    client, files_before = client_for(owner), stored_files()
    with decode_slot():  # another request is decoding
        answer = client.post(
            f"/records/batches/{batch.pk}/files/",
            {"file": SimpleUploadedFile("a.jpg", JPEG)},
            headers={"Accept": "application/json"},
        )
        page = client.post("/records/new/", {"image": SimpleUploadedFile("a.jpg", JPEG)})
    assert answer.status_code == 503 and int(answer["Retry-After"]) >= 1
    assert answer.json()["status"] == "unavailable" and "try again" in answer.json()["message"]
    assert page.status_code == 503 and int(page["Retry-After"]) >= 1
    assert "try again" in page.content.decode()
    assert not Record.objects.exists() and not BatchItem.objects.exists()
    assert stored_files() == files_before
    again = send(client, batch, "a.jpg", JPEG)  # the same file, once a slot is free
    assert again.status_code == 201


def test_101_files_in_one_request_get_a_clear_error_and_store_nothing(owner, batch):
    files = [SimpleUploadedFile(f"{i}.jpg", JPEG) for i in range(101)]
    response = client_for(owner).post(f"/records/batches/{batch.pk}/files/", {"file": files})
    assert response.status_code == 400
    assert "one file per request" in response.json()["message"]
    assert not Record.objects.exists() and not BatchItem.objects.exists()


def test_101_files_to_the_single_record_form_get_a_clear_error(owner):
    files = [SimpleUploadedFile(f"{i}.jpg", JPEG) for i in range(101)]
    response = client_for(owner).post("/records/new/", {"image": files, "product_id": "p"})
    assert response.status_code == 400
    assert "one file per request" in response.content.decode()
    assert not Record.objects.exists()


def test_a_batch_stops_taking_files_at_its_cap(owner, batch, settings):
    settings.UPLOAD_BATCH_MAX_FILES = 2
    client = client_for(owner)
    colors = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    codes = [send(client, batch, "a.jpg", jpeg_bytes(color=color)).status_code for color in colors]
    assert codes == [201, 201, 422]
    assert "already has 2 files" in BatchItem.objects.last().message
    assert Record.objects.count() == 2


def test_shared_fields_apply_and_the_page_shows_everything_after_a_reload(owner):
    client = client_for(owner)
    response = client.post(
        "/records/upload/",
        {"category": "shoes", "tags": "summer; red", "custom_fields": "stock: 3"},
    )
    batch = UploadBatch.objects.get()
    assert response.url == f"/records/batches/{batch.pk}/"
    send(client, batch, "good.jpg", JPEG)
    send(client, batch, "bad.jpg", b"nope")
    record = Record.objects.get()
    assert (record.category, record.tags, record.fields) == (
        "shoes",
        ["summer", "red"],
        {"stock": 3},
    )
    page = client.get(response.url).content.decode()
    assert "good.jpg" in page and "bad.jpg" in page
    assert "not an image in a supported format" in page
    assert f"/records/{record.pk}/" in page


def test_the_same_bytes_twice_is_a_duplicate_unless_added_anyway(owner, batch):
    client = client_for(owner)
    first = send(client, batch, "a.jpg", JPEG)
    again = send(client, batch, "b.jpg", JPEG)
    assert again.status_code == 200
    original = Record.objects.get()
    assert again.json()["status"] == "duplicate"
    assert again.json()["duplicate_url"] == f"/records/{original.pk}/"
    anyway = send(client, batch, "b.jpg", JPEG, allow_duplicate="1")
    assert (first.status_code, anyway.status_code) == (201, 201)
    assert Record.objects.count() == 2


def test_the_single_form_reports_a_duplicate_with_a_link(owner):
    client = client_for(owner)
    client.post("/records/new/", {"image": SimpleUploadedFile("a.jpg", JPEG)})
    original = Record.objects.get()
    response = client.post("/records/new/", {"image": SimpleUploadedFile("a.jpg", JPEG)})
    assert f"/records/{original.pk}/" in response.content.decode()
    assert Record.objects.count() == 1
    client.post(
        "/records/new/", {"image": SimpleUploadedFile("a.jpg", JPEG), "allow_duplicate": "on"}
    )
    assert Record.objects.count() == 2


def test_an_outsider_cannot_upload_into_a_batch_and_a_viewer_cannot_either(batch, outsider, viewer):
    assert send(client_for(outsider), batch, "a.jpg", JPEG).status_code == 404
    assert send(client_for(viewer), batch, "a.jpg", JPEG).status_code == 403
    assert not Record.objects.exists()


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=st.one_of(
        st.binary(max_size=2048),
        st.builds(lambda tail: JPEG[:200] + tail, st.binary(max_size=512)),
        st.builds(lambda tail: PNG[:33] + tail, st.binary(max_size=512)),
        st.builds(lambda head: b"GIF89a" + head, st.binary(max_size=256)),
    ),
    name=st.builds(
        lambda stem, suffix: stem.replace("\x00", "") + suffix,
        st.text(max_size=60),
        st.sampled_from([".jpg", ".png", ".php.jpg", ".svg", ""]),
    ).filter(lambda n: n.strip("./\\ ")),
)
def test_random_bytes_never_break_the_endpoint(owner, batch, small_caps, content, name):
    response = send(client_for(owner), batch, name, content, allow_duplicate="1")
    assert response.status_code in (201, 400, 422), response.status_code
    assert response.json()["message"] or response.status_code == 201
    assert_stored_images_are_clean()
