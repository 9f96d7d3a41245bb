"""``python -m lmmhmc``: the command-line interface."""

from lmmhmc.cli import main

raise SystemExit(main())
