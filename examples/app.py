"""A small gevent service, traced by the distro.

Run it with ``make demo`` (spans printed to the console), or by hand:

    OTEL_PYTHON_DISTRO=gevent opentelemetry-instrument python examples/app.py

It does what real gevent services do and what used to break telemetry:
patches gevent itself, imports python-magic (which runs ``ldconfig`` in a
child process at import), fans work out to greenlets, and runs a subprocess.
"""

import gevent.monkey

gevent.monkey.patch_all()  # already done by the distro: a no-op here

import subprocess  # noqa: E402

import gevent  # noqa: E402
import gevent.pool  # noqa: E402
import magic  # noqa: E402
from opentelemetry import trace  # noqa: E402

tracer = trace.get_tracer("examples.app")


def handle(item: int) -> str:
    with tracer.start_as_current_span("handle-item") as span:
        span.set_attribute("item", item)
        gevent.sleep(0.01 * item)
        return magic.from_buffer(b"%PDF-1.7 demo" if item % 2 else b"plain text", mime=True)


def main() -> None:
    with tracer.start_as_current_span("request"):
        pool = gevent.pool.Pool(3)
        kinds = pool.map(handle, range(1, 4))
        with tracer.start_as_current_span("subprocess"):
            subprocess.run(["true"], check=True)
    print("handled:", ", ".join(kinds))


if __name__ == "__main__":
    main()
