"""The served-requests application: one Flask route, run by gunicorn's gevent worker."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index() -> str:
    return "ok\n"
