#!/usr/bin/env python3
"""Run the kbsearch CLI straight from a checkout: ``python cli.py search "..."``.

Installed, the same command is ``kbsearch``.
"""

from kbsearch.cli import main

if __name__ == "__main__":
    main(prog_name="kbsearch")
