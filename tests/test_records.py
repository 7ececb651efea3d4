import re

import pytest

from ximilar_portal.records.models import Record

from .conftest import client_for, jpeg_bytes

pytestmark = pytest.mark.django_db


def upload(client, **fields):
    return client.post("/records/new/", fields)


def test_it_creates_a_record_in_ximilar_format(owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    image = SimpleUploadedFile("a.jpg", jpeg_bytes(), content_type="image/jpeg")
    response = upload(
        client_for(owner),
        image=image,
        ximilar_id="2342",
        product_id="unique product string",
        category="customer category",
        price="32.5",
        tags="one, two, three",
        custom_fields='my_flag: true\nstock: 12\nsizes: ["S", "M"]\nnote: hello',
    )
    record = Record.objects.get()
    assert response.status_code == 302
    assert record.as_ximilar() == {
        "_id": "2342",
        "product_id": "unique product string",
        "category": "customer category",
        "price": 32.5,
        "tags": ["one", "two", "three"],
        "my_flag": True,
        "stock": 12,
        "sizes": ["S", "M"],
        "note": "hello",
    }
    # A generated name, not the uploaded "a.jpg" (a random hex name may end in "a").
    assert re.fullmatch(rf"records/{record.team_id}/[0-9a-f]{{32}}\.jpg", record.image.name)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"just some text", "not"),
        ("page.jpg", b"<html><script>alert(1)</script></html>", "HTML"),
        ("doc.png", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        ("empty.jpg", b"", "empty"),
    ],
)
def test_it_rejects_what_is_not_a_supported_image(owner, name, content, message):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = upload(client_for(owner), image=SimpleUploadedFile(name, content))
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors["image"])
    assert message.lower() in errors.lower()
    assert not Record.objects.exists()


def test_an_empty_form_gets_a_clear_error_and_creates_nothing(owner):
    response = upload(client_for(owner))
    assert response.status_code == 200
    assert "Choose an image file or give an image URL." in response.content.decode()
    assert not Record.objects.exists()


def test_an_outsider_gets_404_on_the_record_and_its_files(owner, outsider):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload(client_for(owner), image=SimpleUploadedFile("a.jpg", jpeg_bytes()))
    record = Record.objects.get()
    outsider_client = client_for(outsider)
    for path in (
        f"/records/{record.pk}/",
        f"/records/{record.pk}/image/",
        f"/records/{record.pk}/thumbnail/",
    ):
        assert outsider_client.get(path).status_code == 404, path
    submit = outsider_client.post(f"/records/{record.pk}/submit/", {"service": "generic_tags"})
    assert submit.status_code == 404
    assert record.pk not in [r.pk for r in outsider_client.get("/").context["records"]]


def test_a_teammate_sees_the_record(owner, teammate):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload(client_for(owner), image=SimpleUploadedFile("a.jpg", jpeg_bytes()), product_id="p1")
    record = Record.objects.get()
    response = client_for(teammate).get(f"/records/{record.pk}/")
    assert response.status_code == 200
    assert b"p1" in response.content


def test_sending_without_a_token_asks_for_one(owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(owner)
    upload(client, image=SimpleUploadedFile("a.jpg", jpeg_bytes()))
    record = Record.objects.get()
    response = client.post(f"/records/{record.pk}/submit/", {"service": "generic_tags"})
    assert response.status_code == 302
    assert response.url == "/accounts/team/token/"
    assert not record.jobs.exists()


def test_the_admin_edit_page_of_a_record_opens(owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload(client_for(owner), image=SimpleUploadedFile("a.jpg", jpeg_bytes()), product_id="p9")
    record = Record.objects.get()
    owner.is_staff = owner.is_superuser = True
    owner.save()
    response = client_for(owner).get(f"/admin/records/record/{record.pk}/change/")
    assert response.status_code == 200
    assert b"p9" in response.content
