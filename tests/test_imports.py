"""Bulk import: every row checked and shown before anything is created, then
all accepted rows created in one transaction; exports read back unchanged."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ximilar_portal.records import batches, codec
from ximilar_portal.records.models import Record, UploadBatch

from .conftest import client_for, make_user, wait_for

pytestmark = pytest.mark.django_db

CSV = r'''_id,_url,product_id,category,price,tags,color,stock,on_sale,sizes,code
2342,https://example.com/a.jpg,sku-1,shoes,32.5,one|two,red,12,true,"[""S"", ""M""]","""00123"""
,https://example.com/b.jpg,sku-2,,300,a;b;a,blue,,false,,
bad-url,ftp://example.com/c.jpg,sku-3,,,,,,,,
bad-price,https://example.com/d.jpg,,,-4,,,,,,
2342,https://example.com/e.jpg,,,,,,,,,
dup-url,https://example.com/a.jpg,,,,,,,,,
short,https://example.com/f.jpg
'''


def start_import(client, name, content, **extra):
    upload = SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content)
    return client.post("/records/import/", {"file": upload, **extra})


def test_it_previews_every_row_before_creating_anything(owner):
    client = client_for(owner)
    response = start_import(client, "products.csv", CSV)
    batch = UploadBatch.objects.get()
    assert response.url == f"/records/batches/{batch.pk}/"
    assert batch.state == "preview" and not Record.objects.exists()
    page = client.get(response.url).content.decode()
    assert "Create 2 records" in page
    for reason in (
        "is not an http or https address",
        "`price` must be a number between 0",
        "appears earlier in the file",
        "The same URL appears earlier in the file",
        "The row has 2 cells; the header has 11",
    ):
        assert reason in page, reason

    client.post(f"/records/batches/{batch.pk}/import/")
    first, second = Record.objects.order_by("pk")
    assert first.as_ximilar() == {
        "_id": "2342",
        "_url": "https://example.com/a.jpg",
        "product_id": "sku-1",
        "category": "shoes",
        "price": 32.5,
        "tags": ["one", "two"],
        "color": "red",
        "stock": 12,
        "on_sale": True,
        "sizes": ["S", "M"],
        "code": "00123",
    }
    assert second.as_ximilar()["price"] == 300 and second.tags == ["a", "b"]
    assert len(second.ximilar_id) == 32  # generated
    assert {r.batch_id for r in (first, second)} == {batch.pk}
    batch.refresh_from_db()
    assert batch.state == "done"


def test_urls_the_team_already_has_are_duplicates_unless_allowed(owner, team):
    Record.objects.create(team=team, ximilar_id="old", image_url="https://example.com/a.jpg")
    rows = '{"_id": "n1", "_url": "https://example.com/a.jpg"}\n{"_id": "old", "_url": "https://x.example/b.jpg"}\n'
    client = client_for(owner)
    start_import(client, "rows.jsonl", rows)
    batch = UploadBatch.objects.get()
    page = client.get(f"/records/batches/{batch.pk}/").content.decode()
    assert "The same URL is already a record" in page and "already has a record with _id" in page
    assert f"/records/{Record.objects.get().pk}/" in page
    start_import(client, "rows.jsonl", rows, allow_duplicates="on")
    second = UploadBatch.objects.latest("pk")
    client.post(f"/records/batches/{second.pk}/import/")
    assert Record.objects.filter(ximilar_id="n1").exists()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.json", "{not json", "not valid JSON"),
        ("x.json", '{"items": []}', '{"records": [ … ]}'),
        ("x.csv", "a,b\n1,2\n", "`_url` is required"),
        ("x.csv", b"\xff\xfe\x00bad", "not UTF-8"),
        ("x.json", '{"records": [{"_url": "https://e.com/a.jpg", "_base64": "AAAA"}]}', "_base64"),
        (
            "x.json",
            '{"records": [{"_url": "https://e.com/a.jpg", "meta": {"a": 1}}]}',
            "values are",
        ),
        (
            "x.json",
            '{"records": [{"_url": "https://e.com/a.jpg", "tags": "x", "price": true}]}',
            "price",
        ),
        ("x.json", '{"records": [7]}', "JSON object"),
    ],
)
def test_bad_files_and_rows_say_why(owner, name, content, message):
    client = client_for(owner)
    start_import(client, name, content)
    batch = UploadBatch.objects.get()
    page = client.get(f"/records/batches/{batch.pk}/").content.decode()
    assert message in page.replace("&quot;", '"').replace("&#x27;", "'"), page[-3000:]
    assert not Record.objects.exists()


def test_an_import_file_over_the_cap_is_refused_clearly(owner, settings):
    settings.IMPORT_MAX_BYTES = 1000
    response = start_import(client_for(owner), "big.csv", "_url\n" + "https://e.com/a.jpg\n" * 100)
    assert response.status_code == 400
    assert "larger than" in response.content.decode()
    assert not UploadBatch.objects.exists()


def round_trip_records(team):
    rows = [
        {
            "_id": "2342",
            "_url": "https://example.com/my_image.jpg",
            "product_id": "unique product string",
            "my_category": "customer category",
            "product_price": 32.5,
            "my_tags": ["one", "two", "three"],
        },
        {
            "_id": "7",
            "_url": "https://example.com/b.png",
            "category": "c",
            "price": 300,
            "tags": ["x", "y"],
            "flag": False,
            "count": 0,
            "ratio": 0.25,
            "code": "00123",
            "empty_list": [],
        },
        {"_id": "n", "_url": "https://example.com/c.png", "note": "true", "weird": 'a,b|c;"d"\n'},
    ]
    for row in rows:
        Record.objects.create(team=team, **codec.fields_from_ximilar(row))
    return rows


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_an_export_imports_back_exactly(owner, team, fmt):
    rows = round_trip_records(team)
    exported = [r.as_ximilar() for r in Record.objects.order_by("pk")]
    assert exported == rows  # the record JSON is exactly what the user gave
    records = Record.objects.order_by("pk")
    data = codec.export_json(records) if fmt == "json" else codec.export_csv(records)
    other = make_user("importer@example.com")
    other_team = other.memberships.get().team
    batch = batches.import_start(
        team=other_team, user=other, name=f"x.{fmt}", data=data.encode(), allow_duplicates=False
    )
    batches.import_confirm(batch=batch)
    imported = [r.as_ximilar() for r in Record.objects.filter(team=other_team).order_by("pk")]
    assert imported == rows


def test_ten_thousand_rows_import_in_seconds(owner, team, monkeypatch):
    import time

    monkeypatch.setattr(batches, "INLINE_IMPORT_BYTES", 10**9)
    monkeypatch.setattr(batches, "INLINE_COMMIT_ROWS", 10**9)
    lines = ["_id,_url,product_id,category,price,tags,color"]
    lines += [
        f"{i},https://example.com/{i}.jpg,sku-{i},c{i % 7},{i}.5,a|b,red" for i in range(10_000)
    ]
    started = time.monotonic()
    batch = batches.import_start(
        team=team,
        user=owner,
        name="big.csv",
        data="\n".join(lines).encode(),
        allow_duplicates=False,
    )
    batches.import_confirm(batch=batch)
    elapsed = time.monotonic() - started
    assert Record.objects.filter(team=team).count() == 10_000
    assert elapsed < 30, elapsed


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_large_file_is_checked_and_imported_by_the_worker(owner, celery_worker):
    lines = ["_id,_url,price"] + [f"{i},https://example.com/{i}.jpg,{i}" for i in range(8000)]
    content = "\n".join(lines)
    assert len(content) > batches.INLINE_IMPORT_BYTES
    client = client_for(owner)
    response = start_import(client, "big.csv", content)
    batch = UploadBatch.objects.get()
    wait_for(
        lambda: UploadBatch.objects.get().state == "preview", timeout=60, message="the preview"
    )
    assert not Record.objects.exists()
    client.post(f"/records/batches/{batch.pk}/import/")
    wait_for(lambda: UploadBatch.objects.get().state == "done", timeout=60, message="the import")
    assert Record.objects.count() == 8000
    assert ">8000</strong> records created" in client.get(response.url).content.decode()


def test_json_lines_and_json_are_both_read(owner):
    rows = [{"_id": str(i), "_url": f"https://e.com/{i}.jpg", "tags": ["t"]} for i in range(3)]
    client = client_for(owner)
    start_import(client, "a.json", json.dumps({"records": rows}))
    start_import(client, "b.txt", "\n".join(json.dumps(r | {"_id": r["_id"] + "b"}) for r in rows))
    assert [b.source_format for b in UploadBatch.objects.order_by("pk")] == ["json", "jsonl"]
    for batch in UploadBatch.objects.all():
        client.post(f"/records/batches/{batch.pk}/import/")
    assert Record.objects.count() == 6
