"""``python -m requests_resilience.testing``: the fake Vinci server, standalone."""

from requests_resilience.testing._cli import main

raise SystemExit(main())
