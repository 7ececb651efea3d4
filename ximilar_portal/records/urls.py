from django.urls import path

from . import batch_views, views

app_name = "records"

urlpatterns = [
    path("", views.record_list, name="list"),
    path("records/new/", views.record_new, name="new"),
    path("records/bulk/", views.records_bulk, name="bulk"),
    path("records/<int:pk>/", views.record_detail, name="detail"),
    path("records/<int:pk>/edit/", views.record_edit, name="edit"),
    path("records/<int:pk>/delete/", views.record_delete, name="delete"),
    path("records/<int:pk>/image/", views.record_file, {"kind": "image"}, name="image"),
    path("records/<int:pk>/thumbnail/", views.record_file, {"kind": "thumbnail"}, name="thumbnail"),
    path("records/upload/", batch_views.upload_start, name="upload"),
    path("records/urls/", batch_views.url_list, name="urls"),
    path("records/import/", batch_views.import_start, name="import"),
    path("records/batches/<int:pk>/", batch_views.batch_detail, name="batch"),
    path("records/batches/<int:pk>/files/", batch_views.batch_file, name="batch_file"),
    path("records/batches/<int:pk>/import/", batch_views.import_confirm, name="import_confirm"),
]
