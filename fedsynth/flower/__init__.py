"""Flower apps built from the library: the ClientApp (a site) and the ServerApp (the coordinator).

``clients/app.py`` and ``server/app.py`` are the thin entry points ``flwr run`` loads; the library
itself never imports them.
"""
