"""URL names double as the `view` label on the HTTP metrics; keep them stable."""

from django.urls import path

from civicpulse.core import views

urlpatterns = [
    path("civicpulse/health/", views.health, name="health"),
    path("api/users/", views.users_create, name="users_create"),
    path("api/users/<int:user_id>/", views.user_detail, name="user_detail"),
    path("api/audit/", views.audit_list, name="audit_list"),
    path("metrics", views.metrics, name="metrics"),
]

handler400 = "civicpulse.core.responses.bad_request"
handler404 = "civicpulse.core.responses.not_found"
handler500 = "civicpulse.core.responses.server_error"
