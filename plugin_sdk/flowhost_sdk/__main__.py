"""``python -m flowhost_sdk serve module:Class ...``: the ``flowhost-plugin`` command."""

import sys

from flowhost_sdk.cli import main

sys.exit(main())
