import sys

from flowhost.cli import main

sys.exit(main())
