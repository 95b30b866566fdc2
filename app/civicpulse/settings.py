"""Django settings, derived entirely from the validated JSON config (see config.py)."""

from __future__ import annotations

import logging
from typing import Any

from civicpulse.config import get_config
from civicpulse.database import django_database
from civicpulse.jsonlog import json_formatters, json_stream_handler

CONFIG = get_config()

SECRET_KEY = CONFIG.secret_key
DEBUG = CONFIG.debug
ALLOWED_HOSTS = list(CONFIG.allowed_hosts)

# Only what the JSON API needs: no sessions, auth, admin or CSRF (no cookies are
# ever issued, so CSRF protection has nothing to protect).
INSTALLED_APPS = ["civicpulse.core"]
MIDDLEWARE = ["civicpulse.core.middleware.RequestObservabilityMiddleware"]
ROOT_URLCONF = "civicpulse.urls"
WSGI_APPLICATION = "civicpulse.wsgi.application"
TEMPLATES: list[dict[str, Any]] = []

USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# nginx terminates TLS on the same host and says so in X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Request bodies are tiny JSON documents; anything bigger is refused early.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024


DATABASES = {"default": django_database(CONFIG.database)}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": json_formatters(),
    "handlers": {"stdout": json_stream_handler("ext://sys.stdout")},
    "root": {"handlers": ["stdout"], "level": CONFIG.log_level},
    "loggers": {
        # Django's own request logger repeats what the access log line already says.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "ERROR"},
    },
}

# Our JSON lines carry no caller, thread or process: do not gather them for every
# record (the logging HOWTO's "Optimization"; findCaller walks the stack each time).
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False
