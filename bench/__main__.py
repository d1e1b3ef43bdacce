"""``python -m bench``: run every benchmark once and print the table."""

from bench.run import main

raise SystemExit(main())
