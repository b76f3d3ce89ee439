"""One module per CLI command group; each returns an exit code."""
