"""``python -m requests_resilience.vinci``: the ``vinci`` command line."""

from requests_resilience.vinci._cli import main

raise SystemExit(main())
