"""flowhost sample plugin ``jwt-auth-plugin``: adds register, login and /me to a project.

The plugin class is ``flowhost_sample_jwt.plugin:JWTAuthPlugin``; this package imports
nothing heavy so that listing plugins stays cheap.
"""

__version__ = "1.0.0"
