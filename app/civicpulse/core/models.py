"""Schema only: the hot paths use hand-written SQL (see user_store.py) for speed.

Table names are fixed so that SQL stays readable and independent of app labels.
"""

from django.db import models


class User(models.Model):
    username = models.CharField(max_length=150, unique=True)
    email = models.CharField(max_length=254)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "civicpulse_user"


class AuditEvent(models.Model):
    action = models.CharField(max_length=64)
    target_id = models.BigIntegerField()
    request_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "civicpulse_audit_event"


class IdempotencyKey(models.Model):
    """Stored response of a completed create, replayed for a retried request."""

    key = models.CharField(max_length=255, primary_key=True)
    request_fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.TextField()
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "civicpulse_idempotency_key"
