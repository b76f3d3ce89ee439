"""flowhost sample plugin ``redis-cache-plugin``: a Redis-backed cache and a cached endpoint.

The plugin class is ``flowhost_sample_redis_cache.plugin:RedisCachePlugin``; this package
imports nothing heavy so that listing plugins stays cheap.
"""

__version__ = "1.0.0"
