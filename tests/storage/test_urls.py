"""nanonas.storage.urls: what a --storage string may be, checked without connecting or creating
anything, its driver, and masking its password."""

from __future__ import annotations

import sys

import pytest

from nanonas.errors import ConfigError
from nanonas.storage import check_url, is_sqlite, mask, open_storage


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sqlite:/x.db",
        "nanonas.db",
        "postgresql://user@host:port/db",
        "oracle://user@host/db",
        "redis://host:6379/notadb",
        "redis://host:6379/0?nosuchoption=1",
        "sqlite:///missing/x.db",
        "missing/x.log",
    ],
)
def test_bad_url_is_refused_before_anything_is_created(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as checked:
        check_url(url)
    with pytest.raises(ConfigError):
        open_storage(url)
    assert "\n" not in str(checked.value)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match="folder .*missing.* does not exist"):
        check_url(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ConfigError, match="folder .*missing.* does not exist"):
        check_url(str(tmp_path / "missing" / "x.journal"))


def test_a_url_without_driver_gets_the_one_nanonas_installs(tmp_path):
    # SQLAlchemy 2.1 would pick psycopg 3 and mysqlclient, which nanonas's extras do not install.
    assert check_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"
    assert check_url("mysql://u:pw@h:3306/db") == "mysql+pymysql://u:pw@h:3306/db"
    assert check_url("mariadb://u@h/db") == "mariadb+pymysql://u@h/db"
    assert check_url("mysql+pymysql://u@h/db") == "mysql+pymysql://u@h/db"
    assert check_url(f"sqlite:///{tmp_path}/x.db") == f"sqlite:///{tmp_path}/x.db"
    assert check_url(str(tmp_path / "x.log")) == str(tmp_path / "x.log")


@pytest.mark.parametrize(
    ("modules", "url", "extra"),
    [
        (["psycopg2"], "postgresql://u@h/db", "postgres"),
        (["psycopg2"], "postgresql+psycopg2://u@h/db", "postgres"),
        (["pymysql"], "mysql://u@h/db", "mysql"),
        (["pymysql"], "mysql+pymysql://u@h/db", "mysql"),
        (["redis", "redis.connection"], "redis://h:6379/0", "redis"),
    ],
)
def test_missing_driver_names_the_extra(modules, url, extra, monkeypatch):
    for module in modules:  # None in sys.modules makes `import module` fail, as if absent
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConfigError) as error:
        check_url(url)
    assert f"pip install 'nanonas[{extra}]'" in str(error.value)
    assert "\n" not in str(error.value)


def test_another_driver_is_named_with_the_supported_alternative(monkeypatch):
    monkeypatch.setitem(sys.modules, "MySQLdb", None)
    with pytest.raises(ConfigError, match=r"mysql\+pymysql:// and pip install 'nanonas\[mysql\]'"):
        check_url("mysql+mysqldb://u@h/db")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:s3cr3t@host:5432/db",
        "postgresql+psycopg2://user:s3cr3t@host/db?sslmode=require",
        "mysql+pymysql://root:s3cr3t@127.0.0.1:3306/test",
        "redis://:s3cr3t@host:6379/0",
        "redis://default:s3cr3t@host:6379/0",
        "rediss://user:s3cr3t@host:6380",
        "postgresql://user:s3cr3t@with@at@host/db",
        "postgresql://user:s3/cr3t@host/db",
        "postgresql://user:s3cr3t%40x@host/db",
        "postgresql://user@host/db?password=s3cr3t&sslmode=require",
        "postgresql://user:s3cr3t@host/db?application_name=a@b",
        "malformed//user:s3cr3t@host",
        "user:s3cr3t@host",
        "postgresql://u:s3:cr3t@host/db",
    ],
)
def test_mask_never_leaks_the_password(url):
    assert "s3cr3t" not in mask(url)
    assert "cr3" not in mask(url)


def test_mask_keeps_what_is_not_secret():
    assert mask("postgresql://user:pw@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert mask("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert mask("postgresql://u:pw@[::1]:5432/db") == "postgresql://u:***@[::1]:5432/db"
    for url in ["postgresql://user@host:5432/db", "redis://host:6379/0", "/nfs/study.log"]:
        assert mask(url) == url


def test_is_sqlite():
    assert is_sqlite("sqlite:///nanonas.db")
    assert is_sqlite("sqlite+pysqlite:///:memory:")
    for url in ["postgresql://u@h/db", "redis://h:6379/0", "nanonas.log", "sqlite.log"]:
        assert not is_sqlite(url)
