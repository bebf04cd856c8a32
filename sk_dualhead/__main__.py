"""``python -m sk_dualhead`` runs the command line."""

from .cli import main

raise SystemExit(main())
