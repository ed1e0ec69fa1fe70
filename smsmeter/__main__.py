import sys

from smsmeter.cli import main

sys.exit(main())
