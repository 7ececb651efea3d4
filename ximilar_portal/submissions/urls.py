from django.urls import path

from . import collection_views, views

app_name = "submissions"

urlpatterns = [
    path("records/<int:record_pk>/submit/", views.submit_record, name="submit_record"),
    path("submissions/", views.submission_list, name="list"),
    path("submissions/status.json", views.submission_list_status, name="list_status"),
    path("submissions/new/", views.submission_new, name="new"),
    path("submissions/queue/", views.queue_toggle, name="queue"),
    path("submissions/<int:pk>/", views.submission_detail, name="detail"),
    path("submissions/<int:pk>/progress.json", views.submission_progress, name="progress"),
    path("submissions/<int:pk>/cancel/", views.submission_cancel, name="cancel"),
    path("submissions/<int:pk>/delete/", views.submission_delete, name="delete"),
    path("submissions/<int:pk>/retry/", views.submission_retry, name="retry"),
    path("submissions/<int:pk>/jobs/<int:job_pk>/retry/", views.job_retry, name="job_retry"),
    path("collections/", collection_views.collection_list, name="collections"),
    path("collections/new/", collection_views.collection_new, name="collection_new"),
    path("collections/<int:pk>/", collection_views.collection_edit, name="collection_edit"),
    path(
        "collections/<int:pk>/delete/",
        collection_views.collection_delete,
        name="collection_delete",
    ),
]
