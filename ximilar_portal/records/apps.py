from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "ximilar_portal.records"
    label = "records"

    def ready(self):
        from django.conf import settings

        from ximilar_portal.lib import images

        images.set_decode_concurrency(
            settings.IMAGE_DECODE_CONCURRENCY, slot_pixels=settings.IMAGE_MAX_PIXELS
        )
