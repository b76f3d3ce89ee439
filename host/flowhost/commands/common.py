"""What several commands share: turning a spec file into a checked plan."""

from __future__ import annotations

import argparse
import os

from flowhost.catalog import Catalog
from flowhost.plan import Plan
from flowhost.spec import LoadedSpec
from flowhost.static import check_file


def load_plan(args: argparse.Namespace, catalog: Catalog | None = None) -> tuple[LoadedSpec, Plan]:
    """Load and check the spec named on the command line; raises SpecError (exit 2)."""
    return check_file(args.file, args.overrides, catalog or Catalog(), os.environ)
