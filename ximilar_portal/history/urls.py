from django.urls import path

from . import views

app_name = "history"

urlpatterns = [
    path("", views.history_list, name="list"),
    path("insights/", views.history_insights, name="insights"),
    path("export/", views.history_export, name="export"),
    path("exports/", views.export_list, name="exports"),
    path("exports/<int:pk>/download/", views.export_download, name="export_download"),
    path("records/<int:pk>/", views.record_history, name="record"),
    path("submissions/", views.submission_list, name="submissions"),
    path("views/", views.view_create, name="view_create"),
    path("views/<int:pk>/", views.view_update, name="view_update"),
    path("views/<int:pk>/delete/", views.view_delete, name="view_delete"),
]
