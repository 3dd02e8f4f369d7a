"""`python -m golfmodel.doctor gpu [--smoke] [--out DIR]` (the lent machine has no `golf` console script)."""

from golfmodel.doctor import main

raise SystemExit(main())
