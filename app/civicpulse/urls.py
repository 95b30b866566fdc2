"""URL names double as the `view` label on the HTTP metrics; keep them stable."""

from django.urls import path

from civicpulse.config import get_config
from civicpulse.core import views

urlpatterns = [
    path("civicpulse/health/", views.health, name="health"),
    path("api/users/", views.users_create, name="users_create"),
    path("api/users/<int:user_id>/", views.user_detail, name="user_detail"),
    path("api/audit/", views.audit_list, name="audit_list"),
    path("metrics", views.metrics, name="metrics"),
]

if get_config().report_pattern:
    # Only where the benchmark deploys it: the report's failing pattern, not an API.
    urlpatterns.append(path("api/report-pattern/users/", views.users_create_report_pattern,
                            name="users_create_report_pattern"))

handler400 = "civicpulse.core.responses.bad_request"
handler404 = "civicpulse.core.responses.not_found"
handler500 = "civicpulse.core.responses.server_error"
