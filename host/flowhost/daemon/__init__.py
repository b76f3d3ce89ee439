"""``flowhost serve``: the daemon. The API process (``server``, ``service``) serves
``flowhost.v1.HostService`` and supervises worker processes (``supervisor``); plugin code
runs only in those (``worker`` executes runs, ``checker`` checks submitted specs), so a
plugin that crashes, exits or hangs costs its own run, never the daemon."""
