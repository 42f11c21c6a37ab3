"""The HTTP service: a Flask app (``create_app``) served by gunicorn (``server.serve``)."""
