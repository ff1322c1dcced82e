"""Allow ``python -m memshift``."""

from memshift.cli import main

raise SystemExit(main())
