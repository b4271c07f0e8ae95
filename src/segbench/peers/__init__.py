"""Peers: other people's tools run as their users run them, timed beside the project's own
pipelines. They live in an optional dependency group (``uv sync --group peers``) so a plain
install does not carry them; nothing here imports a peer package at module import time.
"""
