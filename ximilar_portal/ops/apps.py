from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ximilar_portal.ops"
    label = "ops"
    verbose_name = "Operations"
