"""``python -m kbsearch``: the command-line interface (the same as the ``kbsearch`` command)."""

from .cli import main

if __name__ == "__main__":
    main()
