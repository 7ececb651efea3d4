from django.urls import path

from . import views

app_name = "ops"

# /healthz is answered by ops.middleware.HealthzMiddleware, ahead of every other check.
urlpatterns = [path("", views.ops_page, name="page")]
