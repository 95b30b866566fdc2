"""WSGI entry point: `gunicorn -c python:civicpulse.gunicorn_conf civicpulse.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "civicpulse.settings")

application = get_wsgi_application()
