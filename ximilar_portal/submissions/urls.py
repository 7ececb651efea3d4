from django.urls import path

from . import views

app_name = "submissions"

urlpatterns = [
    path("records/<int:record_pk>/submit/", views.submit_record, name="submit_record"),
    path("submissions/<int:pk>/", views.submission_detail, name="detail"),
]
