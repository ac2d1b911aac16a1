"""Settings for the test run: the product's own, with a fixed secret so no real one is needed."""

import os

os.environ.setdefault("DASHBOARD_SECRET_KEY", "test-only-secret-key-not-for-any-deployment")

from dashboard_project.settings import *  # noqa: F403
