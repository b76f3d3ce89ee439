"""flowhost sample plugin ``fastapi-scaffolder``: writes a FastAPI project with its own tests.

The plugin class is ``flowhost_sample_fastapi.plugin:FastAPIScaffolder``; this package
imports nothing heavy so that listing plugins stays cheap.
"""

__version__ = "1.0.0"
