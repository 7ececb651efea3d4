from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class AccountsConfig(AppConfig):
    name = "ximilar_portal.accounts"
    label = "accounts"

    def ready(self):
        # A broken key ring must stop the start, not surface as a failed
        # decryption at the first submission.
        from ximilar_portal.lib.crypto import KeyRing, KeyRingError

        try:
            KeyRing.parse(settings.XIMILAR_TOKEN_KEYS)
        except KeyRingError as error:
            raise ImproperlyConfigured(f"XIMILAR_TOKEN_KEYS: {error}") from None
