"""Error reports (the 500 e-mail to ADMINS, Django's debug page) must never
carry a team's API token. Django's own filter hides settings and request
headers whose names look secret, and the local variables of functions marked
`sensitive_variables`; this one also hides, in every traceback frame, local
variables whose name looks secret (token, headers, authorization, ...) and
any value that looks like an Authorization header, so a frame deep inside
requests or urllib3 cannot show one either."""

import re

from django.views.debug import SafeExceptionReporterFilter

SECRET_VALUE = re.compile(r"Authorization|\b(Token|JWT|Bearer) [A-Za-z0-9._~+/=-]{6,}")


class PortalExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|HEADERS|CIPHERTEXT|PLAINTEXT",
        flags=re.IGNORECASE,
    )

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self._cleanse_variable(name, value))
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _cleanse_variable(self, name, value):
        if value == self.cleansed_substitute:
            return value
        value = self.cleanse_setting(name, value)
        try:
            text = repr(value)
        except Exception:  # a broken __repr__ must not break the report
            return self.cleansed_substitute
        return self.cleansed_substitute if SECRET_VALUE.search(text) else value
