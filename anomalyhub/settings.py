"""AnomalyHub settings, read from the environment (see .env.example for every variable).

Two ways to run: with no DATABASE_URL/REDIS_URL the embedded default (SQLite, in-memory
channel layer, tasks in-process, console email); with them, PostgreSQL + Redis + Celery.
"""

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from .lib.env import env_bool, env_datetime, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DJANGO_ENV = env_str("DJANGO_ENV", "development")
if DJANGO_ENV not in {"development", "production", "test"}:
    raise ImproperlyConfigured(f"DJANGO_ENV={DJANGO_ENV!r}; use development, production or test")
PRODUCTION = DJANGO_ENV == "production"
TESTING = DJANGO_ENV == "test"

DEBUG = env_bool("DEBUG", DJANGO_ENV == "development")
SECRET_KEY = env_secret("SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set in production (or SECRET_KEY_FILE)")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",  # runserver speaks ASGI (HTTP + WebSocket)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served locally (no CDN)
    "strawberry_django",
    "channels",
    "allauth",
    "allauth.account",
    "accounts",
    "watchlists",
    "detection",
    "alerts",
    "frontend",
]

MIDDLEWARE = [
    "anomalyhub.lib.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "anomalyhub.lib.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "anomalyhub.urls"
ASGI_APPLICATION = "anomalyhub.asgi.application"
WSGI_APPLICATION = "anomalyhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context.organization",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dev server read while the demo replay writes. IMMEDIATE: a transaction takes the
    # write lock when it begins, so a second writer waits up to `timeout`. A deferred one that read
    # first and then wrote while another wrote failed at once with "database is locked" (the demo's
    # detection pass, while a visitor's login wrote their session).
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20,
                                       "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif env_bool("DB_SERVER_SIDE_BINDING", False):
    # Server-side binding lets psycopg prepare a statement once it ran prepare_threshold times in a
    # session (the detection pass runs the same few every chunk). Off by default: ingest still sends
    # several statements in one query string, which a prepared statement cannot hold; and behind a
    # pooler in transaction mode a session's prepared statements may live on another connection.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True,
                                       "prepare_threshold": env_int("DB_PREPARE_THRESHOLD", 5)}
if env_str("TEST_DATABASE_NAME"):  # lets concurrent test runs on one machine keep apart
    DATABASES["default"]["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: one server, separate db numbers for broker, cache and channel layer --------
REDIS_URL = env_str("REDIS_URL")  # its db number is the base of three consecutive dbs


def _redis_db(url: str, offset: int) -> str:
    """REDIS_URL's db number + offset: broker (+0), cache (+1), channel layer (+2)."""
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit((parts.scheme, parts.netloc, f"/{base + offset}", parts.query, ""))


if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": _redis_db(REDIS_URL, 1)}}
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis' pub/sub layer: one PUBLISH per group reaches every process that has
            # subscribers (see anomalyhub/lib/channel_layer.py; measured in tests/benchmarks/bench_live.py).
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                # redis-py 8 otherwise times idle sockets out after 5 s (close 1011).
                "hosts": [{"address": _redis_db(REDIS_URL, 2), "socket_timeout": None}],
                # Redis pub/sub ignores the db number: a channel published on db 2 reaches
                # subscribers on every db of the server. The db goes into the prefix, so deployments
                # and test runs sharing one Redis server on different dbs never hear each other.
                "prefix": f"asgi.db{urlsplit(_redis_db(REDIS_URL, 2)).path.strip('/')}.",
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "anomalyhub.lib.channel_layer.ThreadSafeInMemoryChannelLayer",
                                  "CONFIG": {"capacity": 5000}}}
# Frames that may wait to be written to one WebSocket before it is closed as too slow (4008):
# bursts below this are absorbed, never silently dropped (detection.consumers).
LIVE_MAX_BACKLOG = env_int("LIVE_MAX_BACKLOG", 5000)
# Seconds a live event may wait for one WebSocket client's socket to take it (uvicorn holds a send
# while the connection's write buffer is full) before that client is dropped (4008): a client that
# stopped reading must not hold its queue, and the events piling up in it, on the server.
LIVE_MAX_SEND_SECONDS = env_int("LIVE_MAX_SEND_SECONDS", 10)
# How often an open WebSocket re-checks the access it was opened with (key, membership and role,
# session), on top of the immediate close a revocation publishes (accounts/socket_access.py): the
# bound for a revocation whose publish was lost. One or two queries per socket each time.
WS_ACCESS_RECHECK_SECONDS = env_int("WS_ACCESS_RECHECK_SECONDS", 300)

# --- Celery ------------------------------------------------------------------------
CELERY_BROKER_URL = _redis_db(REDIS_URL, 0) if REDIS_URL else "memory://localhost/"
# kombu's Redis transport with a channel that survives Redis going away (anomalyhub/celery.py).
CELERY_BROKER_TRANSPORT = "anomalyhub.celery:RedisTransport" if REDIS_URL else None
CELERY_RESULT_BACKEND = None
# Embedded mode runs tasks in-process; tests may also force it.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 360)
CELERY_TASK_DEFAULT_QUEUE = "detect"
# Rollups of a busy series wait this long so that its batches share one refresh (watchlists.tasks).
ROLLUP_DELAY_SECONDS = env_int("ROLLUP_DELAY_SECONDS", 30)
# Series one rollup task refreshes before it queues the rest of its organization's behind others'.
ROLLUP_SERIES_PER_TASK = env_int("ROLLUP_SERIES_PER_TASK", 50)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TIMEZONE = "UTC"
# Scheduled refit of isolation forest and LSTM detectors (docs/detection.md, "Scheduled refit"):
# each retrains every this many hours on its last DETECTOR_REFIT_WINDOW_DAYS of points; beat looks
# for due ones every DETECTOR_REFIT_SWEEP_SECONDS; an organization has at most ORG_MAX_REFITS open.
DETECTOR_REFIT_HOURS = env_int("DETECTOR_REFIT_HOURS", 24)
DETECTOR_REFIT_WINDOW_DAYS = env_int("DETECTOR_REFIT_WINDOW_DAYS", 14)
DETECTOR_REFIT_SWEEP_SECONDS = env_int("DETECTOR_REFIT_SWEEP_SECONDS", 600)
ORG_MAX_REFITS = env_int("ORG_MAX_REFITS", 2)
CELERY_BEAT_SCHEDULE = {
    # Re-queues series whose detection fell behind (e.g. a worker died holding their run).
    "detection-sweep": {"task": "detection.sweep", "schedule": 60.0},
    # Rollups queued (watchlists.pending) that no refresh took: its wake-up lost with Redis, or failing.
    "rollup-sweep": {"task": "watchlists.sweep_rollups", "schedule": 60.0},
    "partitions-ahead": {"task": "watchlists.ensure_partitions", "schedule": 6 * 3600.0},
    # After the US close and the daily imports (providers issue refines this to the exchange calendar).
    "nightly-training": {"task": "detection.train_nightly", "schedule": crontab(hour=2, minute=30)},
    # Learned detectors retrain on recent data every DETECTOR_REFIT_HOURS (detection/services/refit.py).
    "detector-refit": {"task": "detection.refit_due", "schedule": float(DETECTOR_REFIT_SWEEP_SECONDS)},
    # Held (quiet hours, grouping windows) and failed-but-retryable deliveries.
    "alerts-sweep": {"task": "alerts.sweep", "schedule": 30.0},
    # Dispatches lost more than alerts.sweep's 15 minutes ago, up to a day (a long outage).
    "alerts-lost-dispatches": {"task": "alerts.sweep_lost_dispatches", "schedule": 3600.0},
    # Seed 000's daily import after the US close; each run imports only sessions that closed.
    "provider-daily-import": {"task": "watchlists.providers.daily_import",
                              "schedule": crontab(minute=45, hour="20-23")},
    # Seed 001's daily gap detection and auto-backfill.
    "provider-gap-fill": {"task": "watchlists.providers.detect_gaps", "schedule": crontab(minute=30, hour=1)},
    # Per-organization retention of raw ticks (watchlists/retention.py); idempotent, safe late.
    "tick-retention": {"task": "watchlists.purge_expired_ticks", "schedule": crontab(minute=15, hour=3)},
}

# --- Auth ----------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "mandatory")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if PRODUCTION else "http"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[AnomalyHub] "

# --- Email -----------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "AnomalyHub <alerts@anomalyhub.local>")
SENDGRID_API_KEY = env_secret("SENDGRID_API_KEY")
SENDGRID_API_URL = env_str("SENDGRID_API_URL", "https://api.sendgrid.com")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "alerts.transports.email.SendGridEmailBackend" if SENDGRID_API_KEY
    else "django.core.mail.backends.console.EmailBackend",
)

# --- REST ------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1 * 1024 * 1024)
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 32 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "anomalyhub.lib.pagination.Pagination",
    # One bounded JSON reader for every body (anomalyhub/lib/jsonbody.py); DRF's others as they are.
    "DEFAULT_PARSER_CLASSES": ["anomalyhub.lib.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "anomalyhub.lib.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "anomalyhub.lib.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "auth": env_str("THROTTLE_AUTH_RATE", "20/min"),
        "api": env_str("THROTTLE_API_RATE", "6000/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# --- GraphQL limits (docs/security.md, "Limits"): checked on the document, before any resolver runs.
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 10)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 20)
GRAPHQL_MAX_TOKENS = env_int("GRAPHQL_MAX_TOKENS", 4000)
# Rows per page of every GraphQL list of objects, top-level or nested (also the default page).
GRAPHQL_MAX_PAGE_SIZE = env_int("GRAPHQL_MAX_PAGE_SIZE", 100)
# Estimated objects and fields one operation may resolve, page sizes multiplied through its nesting
# (anomalyhub/lib/graphql_cost.py). Two nested full pages fit (a page of 100 deliveries with 3 fields of
# 100 attempts each costs 30,503); three (100^3, a million) do not.
GRAPHQL_MAX_COST = env_int("GRAPHQL_MAX_COST", 50_000)
STRAWBERRY_DJANGO = {"PAGINATION_DEFAULT_LIMIT": GRAPHQL_MAX_PAGE_SIZE, "PAGINATION_MAX_LIMIT": GRAPHQL_MAX_PAGE_SIZE}
SPECTACULAR_SETTINGS = {
    "TITLE": "AnomalyHub API",
    "DESCRIPTION": "Anomaly detection for market data and any other time series.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"FeedbackLabelEnum": "detection.models.Feedback",
                            "TrainingRunStatusEnum": "detection.models.TrainingRun.Status"},
    # /api/v1/docs/ loads Swagger UI from our static files: it renders offline and behind firewalls.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # 3.1: a nullable reference is `oneOf: [$ref, {type: null}]`, which strict validators and
    # generated clients read as meant (3.0's `allOf` + `nullable` is ignored by strict 3.0.3 tools).
    "OAS_VERSION": "3.1.0",
}

# --- Static, i18n ------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "frontend" / "static"]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Outside services ------------------------------------------------------------------
WEBHOOK_ALLOW_PRIVATE_IPS = env_bool("WEBHOOK_ALLOW_PRIVATE_IPS", False)
# Hosts, addresses or networks a webhook may reach even when private (tests allow-list 127.0.0.1).
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", [])
ALPHAVANTAGE_BASE_URL = env_str("ALPHAVANTAGE_BASE_URL", "https://www.alphavantage.co")
POLYGON_BASE_URL = env_str("POLYGON_BASE_URL", "https://api.polygon.io")
POLYGON_WS_URL = env_str("POLYGON_WS_URL", "wss://socket.polygon.io")
# Encrypts provider credentials at rest (Fernet key, urlsafe base64 of 32 bytes). Derived from
# SECRET_KEY when unset, so development works; set it explicitly in production.
CREDENTIALS_KEY = env_secret("CREDENTIALS_KEY")
METRICS_TOKEN = env_secret("METRICS_TOKEN")
DETECTION_DEVICE = env_str("DETECTION_DEVICE", "cpu")
# Messages per detection chunk: each chunk commits anomalies + engine snapshots + cursor together.
DETECTION_SNAPSHOT_INTERVAL = env_int("DETECTION_SNAPSHOT_INTERVAL", 10_000)
INGEST_MAX_BATCH_ROWS = env_int("INGEST_MAX_BATCH_ROWS", 100_000)
# Bounds on what one request may make the service do, checked before the work (docs/security.md,
# "Limits"). Nesting of any JSON body (REST, GraphQL, sign-in): deeper is a 400, never a RecursionError.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 64)
# Columns of a CSV body or file, counted on its header line before anything parses it.
INGEST_MAX_CSV_COLUMNS = env_int("INGEST_MAX_CSV_COLUMNS", 64)
# Times a point may carry: from INGEST_EARLIEST (or the series' history_from) to this far ahead of now.
INGEST_EARLIEST = env_datetime("INGEST_EARLIEST", "1970-01-01T00:00:00Z")
INGEST_MAX_FUTURE_SECONDS = env_int("INGEST_MAX_FUTURE_SECONDS", 86_400)
# Time partitions one ingest batch may create (each one is DDL: ticks monthly, bars and metrics yearly).
INGEST_MAX_NEW_PARTITIONS = env_int("INGEST_MAX_NEW_PARTITIONS", 24)
# The deepest `offset` a REST list accepts (an offset is a scan of that many rows); filter to go further.
API_MAX_OFFSET = env_int("API_MAX_OFFSET", 1_000_000)
# A webhook is disabled (and its owner told) after this many consecutive failed deliveries.
WEBHOOK_DISABLE_AFTER = env_int("WEBHOOK_DISABLE_AFTER", 25)
# Threads serving HTTP requests in one web process (a2wsgi's pool, anomalyhub/asgi.py); each holds a DB connection.
# Few: a view holds the GIL for most of its time, so more threads only wait for it, interleaving every
# request with the others. A streamed export holds its thread until it ends (admins only; raise this
# where several run at once). Measured with `make load` on 2 cores (docs/load-report.md): 4 threads
# gave a median p99 of 88 ms over six runs, 16 threads 126 ms over six.
HTTP_THREADS = env_int("HTTP_THREADS", 4)
# Streamed exports a process runs at once: each holds one of its HTTP threads for as long as it takes
# (a minute or more for millions of points), so at most half of them go to exports and the API and
# ingest always keep the rest. One more is refused with 429 and Retry-After (detection/api/export.py).
EXPORT_STREAMS = env_int("EXPORT_STREAMS", max(1, HTTP_THREADS // 2))

# --- Cost limits (docs/security.md, "Limits"): each checked before the work it bounds ---------
# Rows per page of REST lists (?limit= above it is capped and the page says so) and of points reads.
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 1_000)
POINTS_MAX_PAGE_ROWS = env_int("POINTS_MAX_PAGE_ROWS", 50_000)
# Windows one row can fall in (windowSize / step); a rule asking for more is refused when saved or
# backtested (400 invalid_rule).
RULE_MAX_WINDOWS_PER_POINT = env_int("RULE_MAX_WINDOWS_PER_POINT", 1_000)
# Windows one engine call (a backtest of one series, or a detection chunk of one rule and series)
# may compute; counted arithmetically before any is built. A backtest over it is refused (400
# backtest_too_large); a live chunk over it is skipped for that rule, reported in its stats.
RULE_MAX_WINDOWS_PER_CALL = env_int("RULE_MAX_WINDOWS_PER_CALL", 200_000)
# Raw points one backtest reads per series, and the anomalies it lists.
BACKTEST_MAX_ROWS = env_int("BACKTEST_MAX_ROWS", 5_000_000)
BACKTEST_MAX_LISTED = env_int("BACKTEST_MAX_LISTED", 10_000)
# Anomalies one detection chunk may store; the rest of each series' become one summary anomaly
# carrying their count and time range (detection/limits.py).
ANOMALIES_PER_CHUNK_MAX = env_int("ANOMALIES_PER_CHUNK_MAX", 1_000)
# Detection chunks one task runs for an organization before it queues the rest behind other
# organizations' work (one chunk = DETECTION_SNAPSHOT_INTERVAL points per series).
DETECTION_CHUNKS_PER_TASK = env_int("DETECTION_CHUNKS_PER_TASK", 2)
# Backtests and exports one organization may run at once, across every process (429 beyond).
ORG_MAX_BACKTESTS = env_int("ORG_MAX_BACKTESTS", 2)
ORG_MAX_EXPORTS = env_int("ORG_MAX_EXPORTS", 1)
# A slot a crashed process never gave back is free again after this many seconds.
ORG_SLOT_SECONDS = env_int("ORG_SLOT_SECONDS", 900)

# --- Security (production) -----------------------------------------------------------------
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Probes and Prometheus scrape over plain HTTP inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
# Reverse proxies whose X-Forwarded-For is believed (addresses or networks, comma-separated); from
# anyone else the header changes nothing (anomalyhub.lib.client_address). Empty: the socket's peer is the client.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
# DRF's throttles read the client from REMOTE_ADDR, which the ASGI edge has already decided; its
# default (NUM_PROXIES None) would take X-Forwarded-For from anyone.
REST_FRAMEWORK["NUM_PROXIES"] = 0
# Security-sensitive paths must never be cached by intermediaries.
SESSION_COOKIE_SAMESITE = "Lax"

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "anomalyhub.lib.middleware.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT,
                             "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

if TESTING:
    # PBKDF2's cost is deliberate in production and pure waste in tests.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# History runs (a rule or detector over stored points, detection/services/history.py): points per
# chunk (one atomic commit + snapshot each), seconds one task works before queueing the rest, and
# how long a run may go without a committed chunk before the sweep gives it to another worker.
HISTORY_CHUNK_POINTS = env_int("HISTORY_CHUNK_POINTS", 10_000)
HISTORY_TASK_SECONDS = env_int("HISTORY_TASK_SECONDS", 20)
HISTORY_STALE_SECONDS = env_int("HISTORY_STALE_SECONDS", 60)
# Embedded mode (tasks in-process): history runs and training go to a thread, so the request returns at once.
EMBEDDED_BACKGROUND_THREADS = env_bool("EMBEDDED_BACKGROUND_THREADS", not TESTING)  # tests: inline, deterministic
# Confirming the email from the browser that signed up signs the person in (no second sign-in).
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
# The Anomalies page shows anomalies of one series and source no further apart than this (or three
# bars of a slower series) as one incident.
ANOMALY_GROUP_GAP_SECONDS = env_int("ANOMALY_GROUP_GAP_SECONDS", 300)

# WebSocket frame and flood limits (docs/security.md, "Limits"): past them the socket is closed.
LIVE_WS_MAX_FRAME_BYTES = env_int("LIVE_WS_MAX_FRAME_BYTES", 16 * 1024)
GRAPHQL_WS_MAX_FRAME_BYTES = env_int("GRAPHQL_WS_MAX_FRAME_BYTES", 64 * 1024)  # whole GraphQL documents
WS_FLOOD_MESSAGES = env_int("WS_FLOOD_MESSAGES", 100)
WS_FLOOD_SECONDS = env_int("WS_FLOOD_SECONDS", 10)
