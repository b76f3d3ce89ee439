"""flowhost sample plugin ``python-venv``."""
