"""Settings for the test run: the product's own, with a fixed secret so no real one is needed."""

import os

os.environ.setdefault("DASHBOARD_SECRET_KEY", "test-only-secret-key-not-for-any-deployment")
# Tests walk history pages by the hundred; the throttle has a test of its own.
os.environ.setdefault("DASHBOARD_HISTORY_REQUESTS_PER_MINUTE", "1000000")

from dashboard_project.settings import *  # noqa: F403
