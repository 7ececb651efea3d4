from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "ximilar_portal.history"
    label = "history"

    def ready(self):
        from . import signals  # noqa: F401 - connects the summary refresh hooks
