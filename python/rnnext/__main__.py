"""``python -m rnnext``: the same as the ``rnnext`` command."""

from .cli import main

raise SystemExit(main())
