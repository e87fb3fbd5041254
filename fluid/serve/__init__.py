"""HTTP prediction server (FastAPI); needs the ``serve`` extra: ``pip install -e ".[serve]"``."""

from fluid.serve.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
