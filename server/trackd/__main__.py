import sys

from trackd.cli import main

sys.exit(main())
