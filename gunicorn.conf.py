"""Read by gunicorn when it is started from this directory without --config: the service's settings
(config/gunicorn.py)."""

from config.gunicorn import *  # noqa: F403
