"""flowhost sample plugin ``memory-cache-plugin``: an in-process TTL cache and a cached endpoint.

The plugin class is ``flowhost_sample_memory_cache.plugin:MemoryCachePlugin``; this package
imports nothing heavy so that listing plugins stays cheap.
"""

__version__ = "1.0.0"
