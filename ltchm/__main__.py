import sys

from ltchm.cli import main

sys.exit(main())
