"""The one typed settings object: defaults < config.yaml < DASHBOARD_* environment variables.

Every tunable number of the product lives here, with the reason for its default beside it.
Loaded once per process by `shared/config_loading.py` (`load_settings`), which turns an invalid
value into one line naming the key and where it came from; config.yaml is read by
`shared/config_file.py`. This module is the table itself (docs/ARCHITECTURE.md says why whole).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AnyUrl, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from shared.config_file import CONFIG_PATH_ENV, read_yaml
from shared.legacy_yaml import translate_legacy

ENV_PREFIX = "DASHBOARD_"

# Only used when DASHBOARD_DEBUG is on; any other run must set DASHBOARD_SECRET_KEY.
DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"  # noqa: S105

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Port = Annotated[int, Field(ge=1, le=65535)]
PositiveMs = Annotated[int, Field(ge=1, le=3_600_000)]
PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]
CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Every setting of the product. Field `x` is `x:` in config.yaml and `DASHBOARD_X` in env."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    # --- process ---------------------------------------------------------------------------
    port: Port = 8086  # the earlier service's port; dashboards and docs point here
    bind_host: str = "127.0.0.1"  # loopback unless the operator opens it up
    log_level: LogLevel = "INFO"
    debug: bool = False
    secret_key: str = ""
    allowed_hosts: CommaList = ["localhost", "127.0.0.1", "[::1]"]
    # Origins (scheme://host[:port]) whose form posts Django accepts besides the Host the request
    # names (CSRF_TRUSTED_ORIGINS): only for a proxy that rewrites Host. The shipped nginx
    # passes the browser's Host with its port, so none are needed behind it.
    csrf_trusted_origins: CommaList = []
    # Served over HTTPS (directly or behind a TLS proxy setting X-Forwarded-Proto): secure
    # cookies and HSTS. Off by default because `make run` serves plain HTTP on loopback.
    https: bool = False
    shutdown_timeout_s: PositiveSeconds = 10.0  # contract section 8: both processes exit in 10 s

    # --- stores ----------------------------------------------------------------------------
    redis_url: AnyUrl = AnyUrl("redis://127.0.0.1:6379/0")
    # Redis Sentinel instead of one address (docs/OPERATIONS.md, "Redis high availability"):
    # `host:port` of each sentinel (three on three hosts: a quorum of two survives losing one)
    # and the name they monitor the master under. Empty: `redis_url` names the one Redis. With
    # sentinels, every client asks them for the current master and follows a failover by
    # itself; `redis_url` then gives only the database number (its host and port are unused).
    redis_sentinels: CommaList = []
    redis_master_name: str = Field("", pattern=r"^[A-Za-z0-9_\-.]{0,64}$")
    redis_password: str = ""  # AUTH for the master and replicas behind sentinels
    redis_sentinel_password: str = ""  # AUTH for the sentinels themselves (their requirepass)
    database_url: AnyUrl = AnyUrl("postgres://postgres@127.0.0.1:5432/dashboard")
    # A read replica of database_url (streaming replication) for the history API's reads and
    # exports; writes, migrations and access checks stay on database_url. None: all on it.
    database_replica_url: AnyUrl | None = None
    # Prefix of every Redis key and channel-layer group the product owns, so that two
    # deployments (or two test runs) can share one Redis.
    # (also the channel-layer group names, which allow only these characters). pydantic checks
    # `pattern` with Rust's regex, whose `$` is the end of the text (Python's also matches before
    # a final newline): "dashboard\n" is refused (tests/unit/test_config.py).
    redis_key_prefix: str = Field("dashboard", pattern=r"^[A-Za-z0-9_\-.]{1,64}$")
    # `make run` and `make test` on a machine without Redis or PostgreSQL
    # (dashboard_project.embedded): `auto` starts a private server from a dev wheel for a store
    # whose URL is not set when nothing listens at its default address; `always` does so even
    # when something listens there; `never` fails as before. A URL that is set is used as given.
    embedded: Literal["auto", "always", "never"] = "auto"
    embedded_dir: str = ".data"  # the embedded servers' data, relative to the checkout
    # Django's PostgreSQL connections in each process come from one psycopg pool of at most this
    # many, whatever the number of request threads (Django runs each request's sync work in a
    # thread of its own under ASGI; persistent per-thread connections exhausted the server's 100
    # under 20 concurrent probes, issue 13). 10 per web process: a history page takes ~2 ms, so
    # 10 serve thousands of requests a second (docs/BENCHMARKS.md, "Database connections"),
    # and two web processes plus the admin tools stay far below PostgreSQL's default 100.
    # 0: no pool, one connection per request, closed at its end (measured slower).
    database_pool_max_size: int = Field(10, ge=0, le=1000)
    # A request waits this long for a pooled connection before it fails (503 for the history
    # API, "down" for readiness, 1013 for a token lookup) rather than queueing without end
    # behind a flood. It is also how long a request takes to fail while PostgreSQL is down (the
    # pool does not fail fast), so it stays below the readiness probe's few seconds; 2 s is 1,000
    # history pages of queue on a pool of 10.
    database_pool_timeout_s: PositiveSeconds = Field(2.0, le=600)
    # Every statement through Django's connections (web requests, admin, management commands)
    # is cancelled past this: a runaway query must not hold one of the pool's few connections.
    # The history API's heaviest page reads in milliseconds; the recorder has its own timeout.
    # 0: none (e.g. `migrate` on a large history; docker-compose's migrate service sets it).
    database_statement_timeout_ms: int = Field(10_000, ge=0, le=86_400_000)

    # Prepended to every input channel and cache key of contract 3.1 (`market_data:BTCUSDT`
    # becomes `{input_prefix}market_data:BTCUSDT`). Empty in production, where producers use the
    # contract's names; tests set it so that runs sharing one Redis do not hear each other
    # (pub/sub channels are not scoped by Redis database number).
    input_prefix: str = Field("", pattern=r"^[A-Za-z0-9_\-:.]{0,64}$")

    # --- backends (contract 3.2) -----------------------------------------------------------
    order_service_grpc: str = "localhost:50051"
    account_service_grpc: str = "localhost:50055"
    strategy_service_http: AnyUrl = AnyUrl("http://localhost:8082")
    refresh_period_s: PositiveSeconds = 30.0  # the earlier service polled every 30 s
    backend_timeout_s: PositiveSeconds = 5.0  # the earlier service's per-call timeout
    backend_retries: int = Field(2, ge=0, le=10)
    backend_retry_backoff_s: PositiveSeconds = 0.2
    breaker_failure_threshold: int = Field(3, ge=1, le=1000)
    breaker_reset_s: PositiveSeconds = 15.0

    # --- state and broadcast ---------------------------------------------------------------
    web_interval_ms: PositiveMs = 250  # contract section 4: web cadence
    tui_interval_ms: PositiveMs = 100  # contract section 4: terminal cadence
    max_orders: int = Field(100, ge=1, le=100_000)  # contract 3.1: keep the newest 100 orders
    # A producer's record is a few hundred bytes; 64 KiB leaves room for extra fields while a
    # 1 MB hostile payload is refused before it is parsed.
    ingest_max_payload_bytes: int = Field(65_536, ge=256, le=16_777_216)

    # --- web process -----------------------------------------------------------------------
    # uvicorn (websockets-sansio, uvloop, httptools) measured ~3x cheaper per client than daphne
    # (docs/BENCHMARKS.md); daphne stays supported.
    web_server: Literal["uvicorn", "daphne"] = "uvicorn"
    # Compressing each broadcast frame separately for every client multiplies CPU by the
    # client count; off unless measured worth it for a deployment.
    ws_per_message_deflate: bool = False
    # channels-redis' pub/sub layer (one PUBLISH per group send) or its list-based core layer;
    # chosen by measurement (docs/BENCHMARKS.md, "Channel layer").
    channel_layer_backend: Literal["pubsub", "core"] = "pubsub"
    # `GET /metrics` answers loopback clients only (the Prometheus agent runs beside the
    # process) unless this is on; token access comes with API tokens (access control).
    metrics_public: bool = False
    # `/health/ready` calls the worker gone when its heartbeat (written every
    # leader_renew_ms) is older than this: a few missed renewals, not one slow one.
    ready_heartbeat_max_age_s: PositiveSeconds = 5.0
    # A background task that died (and was restarted) keeps `/health/ready` at 503, naming it,
    # for this long: long enough for probes every few seconds to see it, short enough that a
    # task restarted for good is ready again soon. A task dying over and over makes the worker
    # exit instead (aggregation/worker.py).
    task_failure_report_s: PositiveSeconds = 10.0
    # One `web.stats` log line per interval, like the worker's per second: a web process has
    # many more, larger counts to tally, and its metrics are scraped anyway. 0: no line. The
    # hub checks once a second, so shorter intervals act as 1 s.
    stats_log_interval_s: float = Field(10.0, ge=0, le=86_400)

    # Slow clients (uvicorn): a request head (and so a WebSocket handshake) must be complete
    # this long after it starts, or the connection is closed (slowloris; docs/SECURITY.md). A
    # head is a few hundred bytes: 10 s is ample on any link, and nginx's own is 60 s.
    http_header_timeout_s: PositiveSeconds = Field(10.0, le=300)
    # uvicorn answers new HTTP requests 503 at once while it holds this many connections or
    # tasks (WebSockets included: a process holds 10,000 clients, BENCHMARKS.md), instead of
    # starting a thread for each of a flood of requests. 0: no limit.
    http_limit_concurrency: int = Field(12_000, ge=0, le=1_000_000)

    # --- WebSocket (contract section 4) ----------------------------------------------------
    ws_ping_interval_s: PositiveSeconds = 30.0
    ws_idle_timeout_s: PositiveSeconds = 60.0
    # The earlier service's write timeout: a socket none of whose writes completes for this
    # long (the client stopped reading) is closed 1008 and reset (realtime.writer).
    ws_write_timeout_s: PositiveSeconds = 10.0
    # The `status` frame (contract 4.1) goes to every client when the worker or a backend
    # changes state, and at least this often: the contract's 5 s is the most; a client that
    # has heard nothing for twice this knows its link or its web process is gone.
    ws_status_interval_s: PositiveSeconds = Field(5.0, le=5.0)
    # Before a 1001 close (shutdown) each client is told to reconnect after a delay drawn
    # uniformly from [0, this), so that 5,000 clients do not arrive on the surviving processes
    # in the same millisecond. A handshake costs a web process about 1 ms (BENCHMARKS.md:
    # 5,000 connected in 5.6 s): 1 s spreads a process's clients over that many
    # milliseconds and leaves the other second of issue 14's 2 s goal for the resume itself
    # (bench/reconnect.py is where to tune it). 0: all at once.
    ws_shutdown_reconnect_spread_ms: int = Field(1000, ge=0, le=60_000)
    ws_max_message_bytes: int = Field(4096, ge=64, le=1_048_576)
    # The earlier service queued 256 messages per client; past this we drop and resync instead.
    ws_send_buffer_messages: int = Field(256, ge=1, le=100_000)
    # Per-connection bounds (docs/SECURITY.md). The queue is bounded in bytes too: 256 messages
    # of a few-MiB snapshot would be a gigabyte for one stalled socket. 1 MiB holds minutes of a
    # busy desk's updates for a slow link; 10,000 stalled clients cost at most 10 GiB.
    ws_send_buffer_bytes: int = Field(1_048_576, ge=4096, le=1_073_741_824)
    # Distinct subscriptions (a whole channel, or one symbol of a narrowed one) per socket: a
    # desk's screen follows tens of symbols; a subscribe past this is refused whole.
    ws_max_subscriptions: int = Field(1000, ge=5, le=1_000_000)
    # `refresh` asks for a whole snapshot, the most expensive answer there is: on top of the
    # general message rate, at most this many a second (with this burst) per socket; more are
    # merged into one answered when the rate allows (a refresh is idempotent).
    client_refreshes_per_s: float = Field(1.0, gt=0, le=10_000)
    client_refreshes_burst: int = Field(3, ge=1, le=100_000)
    # Resume (contract 4.1, realtime/resume.py): each web process keeps every cadence's updates
    # of the last `resume_span_s`, so a client reconnecting within it (a dropped link, a web
    # process restarted) gets what it missed instead of a snapshot. Per cadence at most this
    # many updates and bytes (the oldest go first; such a client gets a snapshot), whatever the
    # rate: 120 s of the tui cadence is 1,200 updates; of the demo desk about 5 MiB of frames
    # per cadence (JSON and MessagePack; docs/BENCHMARKS.md), so 32 MiB leaves six times that.
    # 0 s: only a client already current resumes.
    resume_span_s: float = Field(120.0, ge=0, le=3600)
    resume_max_entries: int = Field(10_000, ge=1, le=1_000_000)
    resume_max_bytes: int = Field(33_554_432, ge=4096, le=4_294_967_296)

    # --- history (contract section 8) ------------------------------------------------------
    history_stream_maxlen: int = Field(1_000_000, ge=1000, le=100_000_000)
    history_batch_size: int = Field(5000, ge=1, le=100_000)
    history_retention_days: int = Field(30, ge=1, le=36_500)
    # A recorder that died leaves entries pending; another one claims them after this long.
    history_claim_idle_s: PositiveSeconds = 30.0
    history_read_block_ms: PositiveMs = 1000  # how long one XREADGROUP waits for new entries
    # A bulk export (GET /api/v1/history?format=csv|ndjson) spans at most this many days, so
    # that one request's work is bounded (a day of the demo desk's ticks is ~17M rows).
    history_export_max_days: int = Field(7, ge=1, le=366)
    # History requests (pages, candles, exports) per token (or user, or address) and minute,
    # counted in Redis across web processes; past it, 429 with Retry-After.
    history_requests_per_minute: int = Field(120, ge=1, le=1_000_000)
    recorder_metrics_port: int = Field(9109, ge=0, le=65535)  # 0: do not serve metrics
    # The worker's and the recorder's metrics servers listen here, not on `bind_host` (which the
    # image opens to 0.0.0.0 for the web port): metrics name symbols, strategies and accounts.
    # docker-compose sets 0.0.0.0 where its Prometheus scrapes them over the compose network.
    metrics_bind_host: str = "127.0.0.1"

    # --- worker ----------------------------------------------------------------------------
    worker_metrics_port: int = Field(9108, ge=0, le=65535)  # 0: do not serve metrics
    # A hot standby takes the lease the moment it expires (it waits out the lease's PTTL): after
    # a SIGKILL of the leader, updates resume within the lease plus one tick (issue 14: 2 s).
    # The leader renews three times per lease, so one slow renewal does not cost it the lease.
    leader_lease_ms: PositiveMs = 1500
    leader_renew_ms: PositiveMs = 500
    # A standby ingests everything the leader does and keeps the history rows of the last this
    # many seconds (at most `standby_buffer_rows`): on taking over it appends those the old
    # leader had not (aggregation/standby.py). It must cover the lease plus a flush period.
    standby_buffer_s: float = Field(30.0, ge=5, le=3600)
    standby_buffer_rows: int = Field(200_000, ge=1000, le=10_000_000)

    # --- access control and abuse limits (docs/SECURITY.md) ----------------------------------
    # Token and origin lookups are cached this long per process, and every web process re-checks
    # the tokens and origins of its open sockets this often: revoking a token or disabling an
    # origin closes its sockets within cache + recheck (<= 4 s by default; the issue asks 5 s).
    access_cache_s: PositiveSeconds = Field(2.0, le=60)
    access_recheck_s: PositiveSeconds = Field(2.0, le=60)
    # Client messages per connection: a dashboard sends a handful per minute (subscribe,
    # refresh, ping); 10/s with a burst of 20 leaves room for a UI that re-subscribes in a burst.
    client_messages_per_s: float = Field(10.0, gt=0, le=10_000)
    client_messages_burst: int = Field(20, ge=1, le=100_000)
    # Sustained abuse: this many refused messages within `client_abuse_window_s` closes with 4429
    # (a 100 msg/s flood gets there in about half a second; a client 50 % over its rate in 10 s).
    client_abuse_refusals: int = Field(50, ge=1, le=1_000_000)
    client_abuse_window_s: PositiveSeconds = 10.0
    # Per web process. A desk's traders share an office address; 200 dashboards behind one NAT
    # is a large desk. A token is one program or person: 50 sockets is far above normal use.
    ws_max_connections_per_ip: int = Field(200, ge=1, le=1_000_000)
    ws_max_connections_per_token: int = Field(50, ge=1, le=1_000_000)
    # New WebSocket connections per client address: a reload storm of a dozen tabs passes, a
    # reconnect loop without backoff does not.
    ws_connects_per_ip_per_s: float = Field(20.0, gt=0, le=1_000_000)
    ws_connects_burst: int = Field(50, ge=1, le=1_000_000)
    # Failed authentications (bad, expired or revoked token) per client address: past this many
    # in the window, every attempt from the address is refused (4429 / HTTP 429) until it ends.
    auth_failures_per_ip: int = Field(10, ge=1, le=1_000_000)
    auth_failure_window_s: PositiveSeconds = 60.0
    # Addresses whose X-Forwarded-For is believed (uvicorn): the reverse proxy, so that the limits
    # above see the client's address, not the proxy's. Comma-separated IPs or "*".
    forwarded_allow_ips: str = "127.0.0.1"

    # --- demo desk simulator ---------------------------------------------------------------
    simulator_symbols: int = Field(20, ge=1, le=10_000)
    simulator_ticks_per_s: float = Field(50.0, gt=0, le=1_000_000)

    # The earlier service's values are accepted as it documented them (docs/MIGRATING.md):
    # `debug`, `warn` in any case, and a Redis address without a scheme (`localhost:6379`).
    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(upper, upper)
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_default_scheme(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip() and "://" not in value:
            return f"redis://{value.strip()}"
        return value

    # Lists from the environment are comma-separated (`DASHBOARD_ALLOWED_HOSTS=a,b`).
    @field_validator("allowed_hosts", "csrf_trusted_origins", "redis_sentinels", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("csrf_trusted_origins")
    @classmethod
    def _origins_have_a_scheme(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
                raise ValueError(f"{origin!r} is not scheme://host[:port]")
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            host, _, port = entry.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{entry!r} is not host:port")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: AnyUrl) -> AnyUrl:
        if value.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("database_url", "database_replica_url")
    @classmethod
    def _postgres_scheme(cls, value: AnyUrl | None) -> AnyUrl | None:
        if value is not None and value.scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgres:// URL")
        return value

    @model_validator(mode="after")
    def _secret_outside_debug(self) -> Settings:
        if not self.debug and not self.secret_key:
            raise ValueError(
                "secret_key: required unless debug is on "
                "(set DASHBOARD_SECRET_KEY, or DASHBOARD_DEBUG=1 for development)"
            )
        if self.redis_sentinels and not self.redis_master_name:
            raise ValueError("redis_master_name: required with redis_sentinels")
        if self.leader_renew_ms >= self.leader_lease_ms:
            raise ValueError("leader_renew_ms: must be shorter than leader_lease_ms")
        if self.standby_buffer_s * 1000 < self.leader_lease_ms + 1000:
            # the rows published while nobody leads, and the old leader's last unflushed ones
            raise ValueError("standby_buffer_s: must exceed leader_lease_ms by at least 1 s")
        return self

    @property
    def effective_secret_key(self) -> str:
        """The Django SECRET_KEY: the configured one, or the dev key in debug mode."""
        return self.secret_key or DEV_SECRET_KEY

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order the layers: init arguments > environment > config.yaml > defaults."""
        yaml_path = os.environ.get(CONFIG_PATH_ENV) or None
        # The file as read, with the earlier service's nested keys translated (legacy_yaml).
        values, _ = translate_legacy(read_yaml(yaml_path))
        return (
            init_settings,
            env_settings,
            InitSettingsSource(settings_cls, init_kwargs=values),
        )
