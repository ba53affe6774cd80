import sys

from memelearning.cli import main

sys.exit(main())
