"""A user's gunicorn configuration with its own ``post_fork`` hook.

The hook logs a line and records a span, as a user's hook that opens
connections or warms caches might; both must work in every worker.
"""

from opentelemetry import trace

bind = "127.0.0.1:0"
workers = 2
worker_class = "gevent"
graceful_timeout = 10


def post_fork(server, worker):
    server.log.info("user post_fork ran in worker %s", worker.pid)
    with trace.get_tracer("gunicorn.conf").start_as_current_span("user-post-fork") as span:
        span.set_attribute("worker.pid", worker.pid)
