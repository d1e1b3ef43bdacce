"""ASGI entry point for uvicorn workers: settings come from ``TIERWISE_*`` variables."""

from tierwise.api.app import create_app

app = create_app()
