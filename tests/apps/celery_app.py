"""A Celery application as a user writes it: one task, a Redis broker from the environment."""

import os

from celery import Celery

app = Celery("otel_tasks", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="tasks.add")
def add(x: int, y: int) -> int:
    return x + y
