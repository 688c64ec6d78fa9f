"""``python -m clients``: the command-line client (see ``clients.cli``)."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
