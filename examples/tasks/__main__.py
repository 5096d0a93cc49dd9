"""``python -m examples.tasks``: the seed's Celery sample (see celery_sample.py)."""

import asyncio
import sys

from .celery_sample import main

asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "memory://"))
