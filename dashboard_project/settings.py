"""Django settings, derived from the one typed settings object (`shared.config`).

Nothing here is tuned by hand: every value an operator may change is a field of `Settings`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE

from shared import redis_clients
from shared.config_loading import load_settings_or_exit
from shared.logconfig import logging_config

CONFIG = load_settings_or_exit()

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = CONFIG.effective_secret_key
DEBUG = CONFIG.debug
ALLOWED_HOSTS = list(CONFIG.allowed_hosts)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "aggregation",
    "realtime",
    "history",
    "access",
    "web",
]

# django-prometheus' HTTP metrics (contract section 6): its "before" middleware first and its
# "after" middleware last, so that they time everything in between.
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "dashboard_project.request_id.request_id_middleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "corsheaders.middleware.CorsMiddleware",  # before CommonMiddleware, as its docs ask
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the dashboard's static files, DEBUG or not
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "dashboard_project.urls"
ASGI_APPLICATION = "dashboard_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


def _database(url: str) -> dict[str, Any]:
    """Django's settings for one PostgreSQL server: pooled, named, with a statement timeout."""
    database = dj_database_url.parse(url, conn_max_age=0)
    database["CONN_HEALTH_CHECKS"] = True  # a pooled connection is checked when lent
    database["OPTIONS"] = {
        "application_name": "dashboard",  # tells our connections apart in pg_stat_activity
        "options": f"-c statement_timeout={CONFIG.database_statement_timeout_ms}",
    }
    if CONFIG.database_pool_max_size:
        # One pool per process, shared by every thread (docs/ARCHITECTURE.md, "Database
        # connections"). Two kept open: a probe or token lookup finds one ready after idle time.
        database["OPTIONS"]["pool"] = {
            "min_size": min(2, CONFIG.database_pool_max_size),
            "max_size": CONFIG.database_pool_max_size,
            "timeout": CONFIG.database_pool_timeout_s,
            # psycopg_pool retries a failed connection with backoff (1, 2, 4 ... s) for this
            # long, then lets the next request start afresh: after an outage the pool is back
            # within seconds (its default, 5 min of backoff, left readiness down for 30 s and
            # more).
            "reconnect_timeout": 5.0,
        }
    return dict(database)


DATABASES = {"default": _database(str(CONFIG.database_url))}
if CONFIG.database_replica_url is not None:  # history reads (history/routers.py)
    DATABASES["replica"] = _database(str(CONFIG.database_replica_url))
    DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["history.routers.HistoryReadRouter"]

# channels-redis' pub/sub layer: a group send is one PUBLISH, and each web process's hub is the
# only group member (design principle 7). redis-py 8 defaults (socket_timeout=5, a pool of 100)
# break channels-redis under ~1,000 connections: no read timeout on subscriptions, a larger pool.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": {
            "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "core": "channels_redis.core.RedisChannelLayer",
        }[CONFIG.channel_layer_backend],
        "CONFIG": {
            "hosts": [
                redis_clients.channel_layer_host(
                    CONFIG,
                    socket_timeout=None,
                    socket_connect_timeout=5,
                    max_connections=1000,
                    # CLIENT LIST names each process's layer connections, so that an operator
                    # (or a test) can tell them apart, and cut exactly one process's.
                    client_name=f"{CONFIG.redis_key_prefix}:layer:{os.getpid()}",
                )
            ],
            "prefix": f"{CONFIG.redis_key_prefix}.asgi",
        },
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# WhiteNoise serves app static files straight from the apps (no collectstatic step to forget).
# STATIC_ROOT is set only where `collectstatic` has filled it: WhiteNoise warns about (and the
# test suite fails on) a STATIC_ROOT that does not exist.
WHITENOISE_USE_FINDERS = True
_COLLECTED = BASE_DIR / "staticfiles"
STATIC_ROOT = _COLLECTED if _COLLECTED.is_dir() else None

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- security headers and cookies (docs/SECURITY.md) ------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = list(CONFIG.csrf_trusted_origins)
# Behind TLS, the cookies travel only over HTTPS and browsers are told to stay on HTTPS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = CONFIG.https
SECURE_HSTS_SECONDS = 31_536_000 if CONFIG.https else 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if CONFIG.https else None
# No inline script anywhere (the dashboard's code is static files); admin needs inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],  # the same host's /ws and /api (CSP 3: 'self' covers ws/wss)
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
# Cross-origin REST calls only from enabled AllowedOrigin entries (access.signals), with tokens
# rather than cookies.
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_CREDENTIALS = False

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Bearer first: a 401 then carries its WWW-Authenticate header.
        "access.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "dashboard_project.api_errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Dashboard Server API",
    "DESCRIPTION": "History and state of the trading desk's real-time hub.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "dashboard_project.openapi.add_error_responses",
    ],
}

LOGGING = logging_config(CONFIG.log_level)
# Python warnings (Django's, a library's) become JSON log lines like everything else, instead of
# plain text on stderr. (Under pytest, the suite's filterwarnings still turns them into errors.)
logging.captureWarnings(True)
