#!/usr/bin/env python3
"""Source-tree entry point; same as the installed `civicpulse-manage` command."""

from civicpulse.cli import main

if __name__ == "__main__":
    main()
