from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "ximilar_portal.accounts"
    label = "accounts"
