"""A one-file Django site as a user writes it: settings, URLs and view in one module.

Run it from its own folder with ``DJANGO_SETTINGS_MODULE=django_site``:
``gunicorn -k gevent django_site:application``. ``GET /hello/<n>`` answers
with ``n`` and the pid of the worker. Nothing here mentions OpenTelemetry:
the launch path brings it.
"""

import os

from django.http import JsonResponse
from django.urls import path

DEBUG = False
SECRET_KEY = "test-only-not-secret"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
MIDDLEWARE: list[str] = []
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True


def hello(request, n):
    return JsonResponse({"n": n, "pid": os.getpid()})


urlpatterns = [path("hello/<int:n>", hello)]

_handler = []


def application(environ, start_response):
    """Django's WSGI handler, made on the first request: this module is also the
    settings, which must be complete before Django sets up its middleware."""
    if not _handler:
        from django.core.wsgi import get_wsgi_application

        _handler.append(get_wsgi_application())
    return _handler[0](environ, start_response)
