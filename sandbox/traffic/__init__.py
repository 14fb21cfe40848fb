"""Sandbox traffic generator: keeps the API, the worker and the webhook service busy (``python -m sandbox.traffic``)."""
