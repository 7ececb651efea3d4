import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ximilar_portal.settings")

# filesystem:// means the portal's own transport: kombu's can hand a worker a
# half-written message (lib/filesystem_broker.py). An alias, not a setting, so the
# URL alone decides the transport wherever a broker URL is given.
TRANSPORT_ALIASES["filesystem"] = "ximilar_portal.lib.filesystem_broker:Transport"

app = Celery("ximilar_portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
