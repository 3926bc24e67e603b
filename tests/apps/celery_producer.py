"""Publish N ``tasks.add`` messages (N from the command line) and exit."""

import sys

from celery_app import add

count = int(sys.argv[1])
for i in range(count):
    add.delay(i, i)
print(f"published {count}")
