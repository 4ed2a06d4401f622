"""Sign-up, login and password reset at the root; the account pages of the dashboard under /dashboard/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("signup/", views.signup_view, name="signup"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only (Django 5)
    path("password-reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("dashboard/", views.home, name="dashboard"),
    path("dashboard/welcome/", views.no_tenant, name="dashboard-no-tenant"),
    path("dashboard/switch/", views.tenant_switch, name="tenant-switch"),
    path("dashboard/keys/", views.key_list, name="keys"),
    path("dashboard/keys/new/", views.key_create, name="key-create"),
    path("dashboard/keys/created/", views.key_created, name="key-created"),
    path("dashboard/keys/<int:key_id>/edit/", views.key_edit, name="key-edit"),
    path("dashboard/keys/<int:key_id>/revoke/", views.key_revoke, name="key-revoke"),
    path("dashboard/keys/<int:key_id>/rotate/", views.key_rotate, name="key-rotate"),
    path("dashboard/admin-keys/new/", views.admin_key_create, name="admin-key-create"),
    path("dashboard/admin-keys/<int:key_id>/revoke/", views.admin_key_revoke, name="admin-key-revoke"),
    path("dashboard/team/", views.team, name="team"),
    path("dashboard/team/invite/", views.team_invite, name="team-invite"),
    path("dashboard/team/<int:membership_id>/role/", views.team_role, name="team-role"),
    path("dashboard/team/<int:membership_id>/remove/", views.team_remove, name="team-remove"),
    path("dashboard/settings/", views.account_settings, name="account-settings"),
]
