from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("ximilar_portal.records.urls")),
    path("", include("ximilar_portal.submissions.urls")),
    path("accounts/", include("ximilar_portal.accounts.urls")),
    path("history/", include("ximilar_portal.history.urls")),
    path("audit/", include("ximilar_portal.audit.urls")),
    path("ops/", include("ximilar_portal.ops.urls")),
    path("admin/", admin.site.urls),
]

# A locked database or a full storage answers 503 even when raised outside a view.
handler500 = "ximilar_portal.lib.faults.server_error"
