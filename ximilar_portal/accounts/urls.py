from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import team_views, views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="accounts/login.html", redirect_authenticated_user=True
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Password reset by e-mail: Django's views, our templates (templates/registration/).
    path(
        "password/reset/",
        views.PasswordResetView.as_view(
            success_url=reverse_lazy("accounts:password_reset_done"),
            subject_template_name="registration/password_reset_subject.txt",
            email_template_name="registration/password_reset_email.txt",
        ),
        name="password_reset",
    ),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            success_url=reverse_lazy("accounts:password_reset_complete")
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    # Teams.
    path("teams/new/", team_views.team_create, name="team_create"),
    path("teams/<int:pk>/switch/", team_views.team_switch, name="team_switch"),
    path("team/", team_views.team, name="team"),
    path("team/invite/", team_views.invite, name="invite"),
    path(
        "team/invitations/<int:pk>/revoke/",
        team_views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("team/members/<int:pk>/role/", team_views.member_role, name="member_role"),
    path("team/members/<int:pk>/remove/", team_views.member_remove, name="member_remove"),
    path("team/leave/", team_views.team_leave, name="team_leave"),
    path("invite/<str:token>/", team_views.invitation, name="invitation"),
    # The team's Ximilar token.
    path("team/token/", views.token, name="token"),
    path("team/token/remove/", views.token_remove, name="token_remove"),
    path("team/token/test/", views.token_test, name="token_test"),
]
