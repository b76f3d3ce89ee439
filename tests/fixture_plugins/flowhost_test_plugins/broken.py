"""A plugin module whose import fails, like one with a missing dependency."""

import flowhost_test_plugins_missing_dependency  # type: ignore[import-not-found]  # noqa: F401
