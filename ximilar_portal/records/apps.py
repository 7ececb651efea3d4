from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "ximilar_portal.records"
    label = "records"
