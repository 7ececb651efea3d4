from django.apps import AppConfig


class SubmissionsConfig(AppConfig):
    name = "ximilar_portal.submissions"
    label = "submissions"
