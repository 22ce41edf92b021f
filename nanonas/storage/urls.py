"""Storage URLs: what a `--storage` string names, checked without connecting, and its driver.

| --storage                              | what opens                              | heartbeats |
|----------------------------------------|-----------------------------------------|------------|
| sqlite:///nanonas.db (sqlite:////abs)  | RDBStorage, WAL, 30 s busy timeout      | yes        |
| postgresql://user:pw@host:5432/db      | RDBStorage over psycopg2                | yes        |
| mysql://user:pw@host:3306/db (mariadb) | RDBStorage over PyMySQL                 | yes        |
| redis://[:pw@]host:6379/0 (rediss://)  | Optuna's JournalStorage on Redis        | no         |
| /nfs/shared/nanonas.log (or .journal)  | JournalStorage in a file, symlink lock  | no         |

A URL without a driver gets the one nanonas installs with its extras and tests: postgresql://
means postgresql+psycopg2:// (SQLAlchemy 2.1 would pick psycopg 3) and mysql:// or mariadb://
means +pymysql (SQLAlchemy would pick mysqlclient). A driver written out is used as written.
`check_url` returns the URL with the driver made explicit: that is the string to hand to
`optuna-dashboard`, which does not rewrite it.

A journal file is a plain path ending in .log or .journal, with no scheme: the same string
`optuna-dashboard` accepts. Opening any of them is nanonas.storage.connect's concern.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import urllib.parse
from pathlib import Path

import sqlalchemy
import sqlalchemy.engine
import sqlalchemy.exc

from nanonas.errors import ConfigError

__all__ = ["Target", "check_url", "is_sqlite", "mask", "parse", "reason"]

_EXAMPLES = "sqlite:///nanonas.db, postgresql://user@host/db, mysql://user@host/db, "
_EXAMPLES += "redis://host:6379/0 or a journal file path ending in .log"

# dialect -> (driver nanonas installs, its extra)
_DRIVERS: dict[str, tuple[str, str]] = {
    "postgresql": ("psycopg2", "postgres"),
    "mysql": ("pymysql", "mysql"),
    "mariadb": ("pymysql", "mysql"),
}
_JOURNAL_SUFFIXES = (".log", ".journal")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


@dataclasses.dataclass(frozen=True)
class Target:
    """What a storage string names."""

    kind: str  # rdb | redis | journal
    url: str  # with the driver made explicit (rdb)
    sqlite_file: str | None = None  # the database file of an SQLite URL; None in memory


def mask(url: str) -> str:
    """`url` with any password replaced by ***, for logs, messages and user attrs.

    Masks too much rather than too little, malformed URLs included: everything from the first
    colon that does not start "://" to the last @ goes, and password=... in the query string.
    """
    text = str(url)
    at = text.rfind("@")
    colon = next((m.start() for m in re.finditer(r":(?!//)", text[: max(at, 0)])), -1)
    if colon >= 0:
        text = f"{text[: colon + 1]}***{text[at:]}"
    return re.sub(r"([?&](?:password|passwd|pwd)=)[^&#]*", r"\1***", text, flags=re.I)


def is_sqlite(url: str) -> bool:
    """Whether `url` names an SQLite database: safe for one writer, not for parallel workers."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    return scheme.split("+", 1)[0].lower() == "sqlite"


def check_url(url: str) -> str:
    """Validate `url` without connecting or creating anything; return the URL open_storage uses.

    Raises ConfigError for a malformed URL, an unknown scheme, an SQLite or journal file whose
    folder does not exist, or a driver that is not installed (naming the extra to install).
    """
    return parse(url).url


def parse(url: str) -> Target:
    """What `url` names (see the module docstring); ConfigError as check_url."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"storage must be a URL such as {_EXAMPLES}; got {url!r}")
    if "://" not in url:
        if url.endswith(_JOURNAL_SUFFIXES):
            _check_folder(url, url)
            return Target("journal", url)
        if url.endswith(_SQLITE_SUFFIXES):
            raise ConfigError(f"malformed storage URL {url!r}; did you mean sqlite:///{url}?")
        raise ConfigError(f"malformed storage URL {mask(url)!r}; expected {_EXAMPLES}")
    if url.split("://", 1)[0].lower() in ("redis", "rediss"):
        return Target("redis", _parse_redis(url))
    return _parse_rdb(url)


def _parse_rdb(url: str) -> Target:
    scheme = url.split("://", 1)[0]
    try:
        parsed = sqlalchemy.engine.make_url(url)  # a bad port raises ValueError
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(f"malformed storage URL {mask(url)!r}; expected {_EXAMPLES}") from None
    dialect = parsed.get_backend_name()
    if dialect != "sqlite" and dialect not in _DRIVERS:
        raise ConfigError(
            f"unknown storage scheme {scheme!r} in {mask(url)!r}; valid: sqlite, postgresql, "
            "mysql, mariadb, redis, rediss, or a journal file path ending in .log"
        )
    if dialect in _DRIVERS and "+" not in scheme:
        url = f"{dialect}+{_DRIVERS[dialect][0]}{url[len(scheme) :]}"
        parsed = sqlalchemy.engine.make_url(url)
    driver = parsed.get_driver_name()
    try:
        parsed.get_dialect().import_dbapi()
    except sqlalchemy.exc.NoSuchModuleError:
        raise ConfigError(f"unknown driver {driver!r} in storage URL {mask(url)!r}") from None
    except ImportError:
        raise ConfigError(_missing_driver(dialect, driver, url)) from None
    if dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
        _check_folder(parsed.database, url)
        # A URL with options (uri=true, mode=ro, ...) is left as its author set it up.
        return Target("rdb", url, sqlite_file=None if parsed.query else parsed.database)
    return Target("rdb", url)


def _missing_driver(dialect: str, driver: str, url: str) -> str:
    message = f"storage {mask(url)!r} needs the {dialect} driver {driver!r}, which is not installed"
    if dialect not in _DRIVERS:
        return message
    ours, extra = _DRIVERS[dialect]
    if driver == ours:
        return f"{message}: pip install 'nanonas[{extra}]'"
    return f"{message}; install it, or use {dialect}+{ours}:// and pip install 'nanonas[{extra}]'"


def _parse_redis(url: str) -> str:
    try:
        import redis.connection
    except ImportError:
        raise ConfigError(
            f"storage {mask(url)!r} needs the Redis client, which is not installed: "
            "pip install 'nanonas[redis]'"
        ) from None
    usage = "expected redis://[:password@]host:port/db"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        options = redis.connection.parse_url(url)
    except ValueError as e:
        raise ConfigError(f"malformed Redis URL {mask(url)!r}: {e}; {usage}") from None
    if not parts.hostname or not re.fullmatch(r"/?\d*", parts.path):
        raise ConfigError(f"malformed Redis URL {mask(url)!r}; {usage}")
    # redis-py hands unknown query keys to the connection, which fails only on first use.
    known = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    known |= set(inspect.signature(redis.Redis.__init__).parameters)
    unknown = sorted(set(options) - known - {"host", "port", "username", "password"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} in Redis URL {mask(url)!r}")
    return url


def _check_folder(path: str, url: str) -> None:
    folder = Path(path).parent
    if not folder.is_dir():
        raise ConfigError(f"storage {mask(url)!r}: folder {str(folder)!r} does not exist")


def reason(error: BaseException, url: str) -> str:
    """The driver's own message as one line, with the URL's password scrubbed out."""
    original = getattr(error, "orig", None) or error
    args = getattr(original, "args", ())
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        text = f"{args[1]} (MySQL error {args[0]})"  # PyMySQL: (code, message)
    else:
        # libpq adds hint lines ("This probably means the server terminated abnormally...")
        text = (str(original).strip().splitlines() or [type(original).__name__])[0]
    text = re.sub(r"\(Background on this error at: [^)]*\)", "", text)
    text = " ".join(text.split())
    password = urllib.parse.urlsplit(url).password if "://" in url else None
    for secret in filter(None, {password, password and urllib.parse.unquote(password)}):
        text = text.replace(secret, "***")
    return text
