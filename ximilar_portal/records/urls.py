from django.urls import path

from . import views

app_name = "records"

urlpatterns = [
    path("", views.record_list, name="list"),
    path("records/new/", views.record_new, name="new"),
    path("records/<int:pk>/", views.record_detail, name="detail"),
    path("records/<int:pk>/image/", views.record_file, {"kind": "image"}, name="image"),
    path("records/<int:pk>/thumbnail/", views.record_file, {"kind": "thumbnail"}, name="thumbnail"),
]
