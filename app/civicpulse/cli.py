"""`civicpulse-manage`: Django's manage.py for an installed venv without the source tree."""

import os
import sys


def main() -> None:
    """Run a Django management command with civicpulse settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "civicpulse.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
