"""Which client call runs each service, with the options a submission carries.
The protocol itself lives in lib/ximilar.py; this only picks the method."""

from ximilar_portal.lib import ximilar

SERVICE_CALLS = {
    "generic_tags": lambda client, records, o: client.generic_tags(
        records, lang=o.get("lang", "en"), mode=o.get("mode", "complex")
    ),
    "recognition": lambda client, records, o: client.recognition_classify(
        records, task_id=o["task_id"], version=o.get("version")
    ),
    "fashion_tags": lambda client, records, o: client.fashion_tags(
        records, endpoint=o.get("endpoint", "detect_tags")
    ),
    "homedecor_tags": lambda client, records, o: client.homedecor_tags(
        records, endpoint=o.get("endpoint", "tags")
    ),
    "colors_product": lambda client, records, o: client.dominant_colors(
        records, kind="product", colors=o.get("colors")
    ),
    "colors_generic": lambda client, records, o: client.dominant_colors(
        records, kind="generic", colors=o.get("colors")
    ),
}


def call_service(client, service: str, options: dict, records: list[dict]) -> ximilar.Response:
    return SERVICE_CALLS[service](client, records, options)


def service_label(service: str) -> str:
    known = ximilar.SERVICES.get(service)
    return known.label if known else service
