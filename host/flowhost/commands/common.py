"""What several commands share: turning a spec file into a checked plan."""

from __future__ import annotations

import argparse
import os

from flowhost.catalog import Catalog
from flowhost.plan import Plan
from flowhost.spec import LoadedSpec, load_spec
from flowhost.static import check


def load_plan(args: argparse.Namespace, catalog: Catalog | None = None) -> tuple[LoadedSpec, Plan]:
    """Load and check the spec named on the command line; raises SpecError (exit 2)."""
    spec = load_spec(args.file, args.overrides)
    plan = check(spec, catalog or Catalog(), os.environ)
    return spec, plan
