"""Settings: every INBOX_* environment variable, its default and its meaning.

`inbox --help` prints SETTINGS, so this table is the one place they are documented.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from models import kinds

# The messaging apps' settings (name, default, help), in the order of their kinds: each
# app's module declares its own (models/kinds.py), read here like any other.
APP_SETTINGS: list[tuple[str, str, str]] = [setting for app in kinds.declared() for setting in app.settings]


def app_field(name: str) -> str:
    """The Settings field of an app's setting: INBOX_TELEGRAM_API_BASE is telegram_api_base."""
    return name.removeprefix("INBOX_").lower()


# name, default, help
SETTINGS: list[tuple[str, str, str]] = [
    ("INBOX_DATABASE_URL", "sqlite://inbox.sqlite3",
     "Tortoise database URL: sqlite://inbox.sqlite3 (relative), sqlite:///abs/path.sqlite3, "
     "postgres://user:pw@host:5432/db"),
    ("INBOX_BROADCAST_URL", "memory://",
     "broadcaster URL for real-time events: memory:// (one process) or redis://host:6379"),
    ("INBOX_PUBLIC_URL", "http://127.0.0.1:8000",
     "Public base URL of this server (conversation urls, Twilio signature checks)"),
    ("INBOX_BROADCAST_NAMESPACE", "inbox",
     "Prefix of every broadcast channel: give each deployment sharing one Redis its own"),
    ("INBOX_SUBSCRIPTION_BUFFER", "1000",
     "Events one subscription may buffer before its socket is closed with 1013"),
    ("INBOX_SUBSCRIPTION_BUFFER_BYTES", "4194304",
     "Bytes of frames one subscription may have queued for a socket that does not read before it is closed with 1013"),
    ("INBOX_MAX_BODY_BYTES", "1048576", "Largest HTTP body accepted (larger: 413)"),
    ("INBOX_ALLOWED_ORIGINS", "",
     "Comma-separated browser origins allowed for websockets and CORS ('*' for any)"),
    ("INBOX_WS_PING_INTERVAL", "20", "Seconds between websocket protocol pings (dead-socket detection)"),
    ("INBOX_WS_MAX_MESSAGE_BYTES", "262144",
     "Largest websocket message a client may send (larger: the socket closes with 1009)"),
    ("INBOX_WS_MAX_SUBSCRIPTIONS", "100",
     "Operations at once on one websocket (more: an error with RATE_LIMITED for the new one)"),
    ("INBOX_WS_MAX_SOCKETS_PER_USER", "50",
     "Open websockets of one user in one server process (more: the newest closes with 4429)"),
    ("INBOX_WS_CONNECTION_INIT_TIMEOUT", "10",
     "Seconds a websocket may take to send connection_init (then it closes with 4408)"),
    ("INBOX_WS_COMPRESSION", "false",
     "true: accept permessage-deflate when a client offers it (browsers do): less bandwidth, more CPU and "
     "memory per socket"),
    ("INBOX_WS_MAX_PENDING_SOCKETS", "1000",
     "Websockets in one server process that have not completed connection_init (more: the new one closes with 1013)"),
    ("INBOX_WS_SETUP_SLOTS_PER_USER", "4",
     "Websocket operations of one user set up at once in one process (of 16 there): the rest wait"),
    ("INBOX_WS_SETUPS_PER_SECOND_PER_USER", "100",
     "Websocket operations one user may start a second in one process, after a burst of twice that: "
     "the rest wait their turn (0: no pace)"),
    ("INBOX_BODY_TIMEOUT_SECONDS", "10",
     "Seconds an HTTP request body may take to arrive once its headers are in (slower: 408)"),
    ("INBOX_HTTP_REQUESTS_PER_SECOND_PER_USER", "200",
     "GraphQL HTTP requests one user or partner token may start a second in one process, after a burst of twice "
     "that; each 64 KiB of a body counts as one more; the rest wait their turn (0: no pace)"),
    ("INBOX_HEADER_TIMEOUT_SECONDS", "10",
     "Seconds an HTTP request's line and headers may take to arrive from their first byte (slower: 408)"),
    ("INBOX_LOG_LEVEL", "INFO", "Python logging level"),
    ("INBOX_ACCESS_LOG", "false",
     "true: one log line per HTTP request (uvicorn's access log; off by default: about a tenth of a small "
     "query's CPU, and /metrics counts requests)"),
    ("INBOX_MAX_QUERY_NODES", "10000",
     "Largest cost of one operation: the objects it can return, connections at first/last (over: "
     "BAD_USER_INPUT, reason QUERY_TOO_COSTLY; for a subscription, per event)"),
    ("INBOX_QUERY_TIMEOUT_SECONDS", "10",
     "Execution budget of one query; past it the query is cancelled (BAD_USER_INPUT, reason QUERY_TIMEOUT)"),
    ("INBOX_WHATSAPP_NEW_INSTALLS", "true",
     "false: only companies that already have a WhatsApp channel may install another"),
    # Each messaging app's own (its API bases), declared by its module of channels/.
    *APP_SETTINGS,
    ("INBOX_SEND_TIMEOUT", "10", "Seconds one call to a messaging app's API may take before it is retried"),
    ("INBOX_SEND_RETRY_SECONDS", "600",
     "How long failed sends (network, timeout, 429, 5xx) are retried before the message is FAILED"),
    ("INBOX_SEND_BACKOFF_SECONDS", "1", "First retry delay; doubles per attempt (capped at 60 s)"),
    ("INBOX_SEND_CONCURRENCY_PER_CHANNEL", "4",
     "Replies of one channel handed to its messaging app at once (a slow app delays only its own channel)"),
    ("INBOX_CALLBACK_ALLOW_PRIVATE", "false",
     "true: CUSTOM callbackUrls may point at loopback, private, link-local, multicast or unspecified "
     "addresses (tests, partners on the same network)"),
    ("INBOX_SMTP_URL", "",
     "SMTP server for notification emails: smtp://host:port (STARTTLS when offered), smtps://host:port, "
     "with user:password@ to log in; empty: emails stay queued until it is set"),
    ("INBOX_EMAIL_FROM", "Inbox <inbox@localhost>", "From address of notification emails"),
    ("INBOX_EMAIL_COLLAPSE_SECONDS", "120",
     "The first new-message email of a conversation goes at once; later ones within this window join one "
     "follow-up"),
    ("INBOX_EMAIL_TIMEOUT", "30", "Seconds one SMTP delivery may take before it is retried"),
    ("INBOX_EMAIL_BACKOFF_SECONDS", "5", "First email retry delay; doubles per attempt (capped at 300 s)"),
    ("INBOX_EMAIL_RETRY_SECONDS", "172800", "How long an email is retried before it is given up"),
    ("INBOX_NOTE_MAX_MESSAGES", "200",
     "Messages one note holds: a note window that reaches it opens a new note (taken when a conversation is linked)"),
    ("INBOX_MEDIA_DIR", "./inbox-media",
     "Folder of the files the server keeps (inbound attachments, uploads) when INBOX_MEDIA_S3_URL is empty"),
    ("INBOX_MEDIA_S3_URL", "",
     "s3://bucket/prefix: keep files in an S3-compatible object store instead of INBOX_MEDIA_DIR"),
    ("INBOX_MEDIA_S3_ENDPOINT", "", "S3 endpoint URL (empty: AWS's); e.g. https://minio.example:9000"),
    ("INBOX_MEDIA_S3_REGION", "us-east-1", "S3 region"),
    ("INBOX_MEDIA_S3_ACCESS_KEY_ID", "", "S3 access key id (empty: boto3's usual credential chain)"),
    ("INBOX_MEDIA_S3_SECRET_ACCESS_KEY", "", "S3 secret access key"),
    ("INBOX_MEDIA_MAX_BYTES", "26214400",
     "Largest file kept (inbound fetch or POST /media upload); larger: not stored, or 413"),
    ("INBOX_MEDIA_FETCHES_PER_CHANNEL", "4", "Inbound files fetched at once per channel in one process"),
    ("INBOX_MEDIA_FETCH_TIMEOUT", "60", "Seconds one fetch of a file may take before it is retried"),
    ("INBOX_MEDIA_RETRY_SECONDS", "3600", "How long a file's fetch is retried (with backoff) before it is given up"),
    ("INBOX_MEDIA_QUOTA_BYTES", "",
     "Stored bytes per company; a company over it keeps receiving messages but their files are not kept "
     "(empty: no quota)"),
    ("INBOX_MEDIA_URL_SECONDS", "3600",
     "Lifetime of the signed /media URLs given in Attachment.url and to the messaging apps"),
    ("INBOX_MEDIA_SECRET", "",
     "Key signing /media URLs; set the same value on every process (empty: a random key per process)"),
    ("INBOX_METRICS_TOKEN", "",
     "Enables GET /metrics (Prometheus text format) for `Authorization: Bearer <this token>`; empty: 404"),
]


def _env(name: str) -> str:
    for key, default, _ in SETTINGS:
        if key == name:
            return os.environ.get(name, default)
    raise KeyError(name)


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class _ServerSettings:
    """The server's own settings; `Settings` adds one field per messaging app's setting."""

    database_url: str
    broadcast_url: str
    public_url: str
    subscription_buffer: int
    max_body_bytes: int
    allowed_origins: tuple[str, ...]
    ws_ping_interval: float
    log_level: str
    whatsapp_new_installs: bool
    send_timeout: float = 10.0
    access_log: bool = False
    send_retry_seconds: float = 600.0
    send_backoff_seconds: float = 1.0
    send_concurrency_per_channel: int = 4
    callback_allow_private: bool = False
    broadcast_namespace: str = "inbox"
    smtp_url: str = ""
    email_from: str = "Inbox <inbox@localhost>"
    email_collapse_seconds: float = 120.0
    email_timeout: float = 30.0
    email_backoff_seconds: float = 5.0
    email_retry_seconds: float = 172800.0
    note_max_messages: int = 200
    metrics_token: str = ""
    ws_max_message_bytes: int = 262144
    ws_max_subscriptions: int = 100
    ws_max_sockets_per_user: int = 50
    ws_connection_init_timeout: float = 10.0
    ws_max_pending_sockets: int = 1000
    ws_setup_slots_per_user: int = 4
    ws_setups_per_second_per_user: float = 100.0
    ws_compression: bool = False
    body_timeout_seconds: float = 10.0
    header_timeout_seconds: float = 10.0
    http_requests_per_second_per_user: float = 200.0
    media_dir: str = "./inbox-media"
    media_s3_url: str = ""
    media_s3_endpoint: str = ""
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str = ""
    media_s3_secret_access_key: str = ""
    media_max_bytes: int = 26214400
    media_fetches_per_channel: int = 4
    media_fetch_timeout: float = 60.0
    media_retry_seconds: float = 3600.0
    media_quota_bytes: int | None = None
    media_url_seconds: float = 3600.0
    media_secret: str = ""
    max_query_nodes: int = 10_000
    query_timeout_seconds: float = 10.0
    subscription_buffer_bytes: int = 4194304

    @classmethod
    def from_env(cls) -> "Settings":
        assert issubclass(cls, Settings)
        origins = tuple(o.strip() for o in _env("INBOX_ALLOWED_ORIGINS").split(",") if o.strip())
        return cls(
            database_url=_env("INBOX_DATABASE_URL"),
            broadcast_url=_env("INBOX_BROADCAST_URL"),
            public_url=_env("INBOX_PUBLIC_URL").rstrip("/"),
            subscription_buffer=int(_env("INBOX_SUBSCRIPTION_BUFFER")),
            max_body_bytes=int(_env("INBOX_MAX_BODY_BYTES")),
            allowed_origins=origins,
            ws_ping_interval=float(_env("INBOX_WS_PING_INTERVAL")),
            log_level=_env("INBOX_LOG_LEVEL"),
            access_log=_flag(_env("INBOX_ACCESS_LOG")),
            whatsapp_new_installs=_flag(_env("INBOX_WHATSAPP_NEW_INSTALLS")),
            send_timeout=float(_env("INBOX_SEND_TIMEOUT")),
            send_retry_seconds=float(_env("INBOX_SEND_RETRY_SECONDS")),
            send_backoff_seconds=float(_env("INBOX_SEND_BACKOFF_SECONDS")),
            send_concurrency_per_channel=max(1, int(_env("INBOX_SEND_CONCURRENCY_PER_CHANNEL"))),
            callback_allow_private=_flag(_env("INBOX_CALLBACK_ALLOW_PRIVATE")),
            broadcast_namespace=_env("INBOX_BROADCAST_NAMESPACE"),
            smtp_url=_env("INBOX_SMTP_URL").strip(),
            email_from=_env("INBOX_EMAIL_FROM"),
            email_collapse_seconds=float(_env("INBOX_EMAIL_COLLAPSE_SECONDS")),
            email_timeout=float(_env("INBOX_EMAIL_TIMEOUT")),
            email_backoff_seconds=float(_env("INBOX_EMAIL_BACKOFF_SECONDS")),
            email_retry_seconds=float(_env("INBOX_EMAIL_RETRY_SECONDS")),
            note_max_messages=max(1, int(_env("INBOX_NOTE_MAX_MESSAGES"))),
            metrics_token=_env("INBOX_METRICS_TOKEN").strip(),
            ws_max_message_bytes=int(_env("INBOX_WS_MAX_MESSAGE_BYTES")),
            ws_max_subscriptions=int(_env("INBOX_WS_MAX_SUBSCRIPTIONS")),
            ws_max_sockets_per_user=int(_env("INBOX_WS_MAX_SOCKETS_PER_USER")),
            ws_connection_init_timeout=float(_env("INBOX_WS_CONNECTION_INIT_TIMEOUT")),
            ws_max_pending_sockets=max(1, int(_env("INBOX_WS_MAX_PENDING_SOCKETS"))),
            ws_setup_slots_per_user=int(_env("INBOX_WS_SETUP_SLOTS_PER_USER")),
            ws_setups_per_second_per_user=float(_env("INBOX_WS_SETUPS_PER_SECOND_PER_USER")),
            ws_compression=_flag(_env("INBOX_WS_COMPRESSION")),
            body_timeout_seconds=float(_env("INBOX_BODY_TIMEOUT_SECONDS")),
            header_timeout_seconds=float(_env("INBOX_HEADER_TIMEOUT_SECONDS")),
            http_requests_per_second_per_user=float(_env("INBOX_HTTP_REQUESTS_PER_SECOND_PER_USER")),
            media_dir=_env("INBOX_MEDIA_DIR"),
            media_s3_url=_env("INBOX_MEDIA_S3_URL").strip(),
            media_s3_endpoint=_env("INBOX_MEDIA_S3_ENDPOINT").strip(),
            media_s3_region=_env("INBOX_MEDIA_S3_REGION").strip(),
            media_s3_access_key_id=_env("INBOX_MEDIA_S3_ACCESS_KEY_ID").strip(),
            media_s3_secret_access_key=_env("INBOX_MEDIA_S3_SECRET_ACCESS_KEY").strip(),
            media_max_bytes=int(_env("INBOX_MEDIA_MAX_BYTES")),
            media_fetches_per_channel=max(1, int(_env("INBOX_MEDIA_FETCHES_PER_CHANNEL"))),
            media_fetch_timeout=float(_env("INBOX_MEDIA_FETCH_TIMEOUT")),
            media_retry_seconds=float(_env("INBOX_MEDIA_RETRY_SECONDS")),
            media_quota_bytes=int(_env("INBOX_MEDIA_QUOTA_BYTES")) if _env("INBOX_MEDIA_QUOTA_BYTES").strip() else None,
            media_url_seconds=float(_env("INBOX_MEDIA_URL_SECONDS")),
            media_secret=_env("INBOX_MEDIA_SECRET"),
            max_query_nodes=int(_env("INBOX_MAX_QUERY_NODES")),
            query_timeout_seconds=float(_env("INBOX_QUERY_TIMEOUT_SECONDS")),
            subscription_buffer_bytes=int(_env("INBOX_SUBSCRIPTION_BUFFER_BYTES")),
            **{app_field(name): _app_value(_env(name)) for name, _, _ in APP_SETTINGS},
        )


def _app_value(value: str) -> str:
    """An app's setting is text; a URL (its API base) is used without its trailing '/'."""
    return value.rstrip("/") if "://" in value else value


# The settings: the server's own, then a text field per messaging app's setting (e.g.
# telegram_api_base), whose default is the one its module declares.
Settings = dataclasses.make_dataclass(
    "Settings", [(app_field(name), str, dataclasses.field(default=_app_value(default)))
                 for name, default, _ in APP_SETTINGS],
    bases=(_ServerSettings,), frozen=True)
Settings.__module__ = __name__


def tortoise_config(database_url: str) -> dict:
    return {
        "connections": {"default": _connection(database_url)},
        "apps": {
            "inbox": {
                "models": ["models"],
                "migrations": "models.migrations",
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


def _connection(database_url: str) -> str | dict:
    """PostgreSQL plans every statement for its parameters: asyncpg prepares statements,
    and after five runs PostgreSQL may switch to one generic plan, which cannot see that a
    search pattern is selective and scans every message instead of the trigram index."""
    if not database_url.startswith(("postgres://", "postgresql://", "asyncpg://")):
        return database_url
    from tortoise.backends.base.config_generator import expand_db_url

    expanded = expand_db_url(database_url)
    expanded["credentials"].setdefault("server_settings", {})["plan_cache_mode"] = "force_custom_plan"
    return expanded


# For the `tortoise` command line (makemigrations), configured in pyproject.toml.
TORTOISE_ORM = tortoise_config(_env("INBOX_DATABASE_URL"))
