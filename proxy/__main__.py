"""`python -m proxy` runs the `tag-gate` command."""

from .cli import main

raise SystemExit(main())
