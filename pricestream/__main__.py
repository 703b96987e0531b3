"""``python -m pricestream``: the same command line as ``pricestream``."""

from pricestream.cli import main

raise SystemExit(main())
