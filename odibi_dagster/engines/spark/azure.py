"""Spark on Azure storage: ``abfs://``/``abfss://`` and ``wasb://``/``wasbs://`` through hadoop-azure.

* **Jars**: ``org.apache.hadoop:hadoop-azure`` of the Hadoop version bundled with pyspark
  (:func:`hadoop_azure_package`), resolved from Maven Central through the same Ivy cache as
  the Delta jars, and only for sessions that need it (``SparkEngine(azure=...)``).
* **URLs**: the project's short form ``abfs://container/path`` (the account comes from the
  environment, as for the pandas engine's adlfs) becomes the Hadoop form
  ``abfss://container@<account>.dfs.core.windows.net/path``; URLs that name their account
  (``abfss://c@acct.dfs.core.windows.net/p``, ``wasbs://c@acct.blob.core.windows.net/p``) are
  used as written (:meth:`AzureStorage.hadoop_url`).
* **Credentials** come from the same settings as :func:`odibi_dagster.engines.paths.storage_options_for`
  (``AZURE_STORAGE_CONNECTION_STRING``, else ``AZURE_STORAGE_ACCOUNT_NAME`` with
  ``AZURE_STORAGE_ACCOUNT_KEY`` or ``AZURE_STORAGE_SAS_TOKEN``; a service principal through
  ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``/``AZURE_TENANT_ID``). They are set on the running
  SparkContext's Hadoop configuration (:func:`configure`), never in the Spark conf the session
  starts with (which Spark logs), and :data:`REDACTION_REGEX` makes Spark mask those keys
  wherever it does print its Hadoop or SQL configuration (event log, UI).
* **An emulator** (Azurite: a connection string whose ``BlobEndpoint`` is
  ``http://127.0.0.1:PORT/devstoreaccount1``, or ``UseDevelopmentStorage=true``) serves only
  the blob endpoint, which hadoop-azure reaches only at ``<account>.blob.core.windows.net``.
  Every Azure URL then becomes ``wasb://container@<account>.blob.core.windows.net/path`` (plain
  HTTP, as the emulator speaks), and the JVMs send plain-HTTP requests to that host through
  the emulator as their HTTP proxy (``http.proxyHost``); Azurite answers such production-style
  requests for the account the host names.
"""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from odibi_dagster.engines import paths

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "AZURE_SCHEMES",
    "PROVIDED_BY_SPARK_AZURE",
    "REDACTION_REGEX",
    "AzureStorage",
    "configure",
    "hadoop_azure_package",
    "hadoop_url",
    "hadoop_version",
    "is_azure_url",
    "redaction_regex",
]

#: URL schemes of Azure storage: adlfs's (``abfs``, ``abfss``, ``az``) and WASB's.
AZURE_SCHEMES = frozenset({"abfs", "abfss", "az", "wasb", "wasbs"})
#: What hadoop-azure pulls in that Spark already ships (kept off the download and the classpath).
PROVIDED_BY_SPARK_AZURE = (
    "org.apache.httpcomponents:*",
    "commons-codec:commons-codec",
    "commons-logging:commons-logging",
)
#: Spark's default ``spark.redaction.regex``, and the hadoop-azure credential keys it misses
#: (``fs.azure.account.key.<host>``, WASB's ``fs.azure.sas.<container>.<host>``); OAuth secrets
#: and SAS tokens are already covered by ``secret`` and ``token``.
SPARK_DEFAULT_REDACTION = r"(?i)secret|password|token|access[.]?key"
REDACTION_REGEX = r"fs\.azure\.account\.key|fs\.azure\.sas"

_DEFAULT_SUFFIX = "core.windows.net"
_EMULATOR_ACCOUNT = "devstoreaccount1"
# Azurite's documented development key: part of every emulator connection string, not a secret.
_EMULATOR_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_FIXED_SAS_PROVIDER = "org.apache.hadoop.fs.azurebfs.services.FixedSASTokenProvider"
_CLIENT_CREDS_PROVIDER = "org.apache.hadoop.fs.azurebfs.oauth2.ClientCredsTokenProvider"


def is_azure_url(path: str) -> bool:
    """Whether ``path`` is an Azure storage URL (``abfs[s]://``, ``az://``, ``wasb[s]://``)."""
    return paths.protocol_of(str(path)) in AZURE_SCHEMES


def hadoop_version() -> str:
    """The Hadoop version bundled with pyspark (``jars/hadoop-client-api-<version>.jar``)."""
    import pyspark

    homes = [Path(pyspark.__file__).resolve().parent]
    if os.environ.get("SPARK_HOME"):
        homes.append(Path(os.environ["SPARK_HOME"]))
    for home in homes:
        for jar in sorted((home / "jars").glob("hadoop-client-api-*.jar")):
            return jar.name[len("hadoop-client-api-") : -len(".jar")]
    raise RuntimeError(f"no hadoop-client-api jar under {', '.join(str(h / 'jars') for h in homes)}")


def hadoop_azure_package() -> str:
    """The Maven coordinate of hadoop-azure matching pyspark's Hadoop (``org.apache.hadoop:hadoop-azure:3.4.1``)."""
    return f"org.apache.hadoop:hadoop-azure:{hadoop_version()}"


def redaction_regex(current: str | None) -> str:
    """``spark.redaction.regex`` extended with the hadoop-azure credential keys."""
    base = current or SPARK_DEFAULT_REDACTION
    return base if REDACTION_REGEX in base else f"{base}|{REDACTION_REGEX}"


def _emulator_endpoint(endpoint: str) -> tuple[str, int] | None:
    """``(host, port)`` of an emulator's blob endpoint (``http://127.0.0.1:10000/devstoreaccount1``):
    a loopback or IP host that addresses the account in the path, as Azurite does."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        is_ip = ipaddress.ip_address(host) is not None
    except ValueError:
        is_ip = False
    if not (is_ip or host == "localhost") or not parts.path.strip("/"):
        return None
    return host, parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class AzureStorage:
    """One storage account as Spark reaches it: its name, credentials and endpoints."""

    account: str
    key: str | None = None
    sas: str | None = None
    oauth: tuple[str, str, str] | None = None  # client id, client secret, tenant
    suffix: str = _DEFAULT_SUFFIX
    emulator: tuple[str, int] | None = None  # an emulator's blob endpoint (host, port)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AzureStorage | None:
        """The account of the environment's Azure settings (see the module docstring), or None."""
        env = os.environ if environ is None else environ
        conn = env.get("AZURE_STORAGE_CONNECTION_STRING")
        if conn:
            return cls.from_connection_string(conn)
        account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
        if not account:
            return None
        oauth = None
        if env.get("AZURE_CLIENT_ID") and env.get("AZURE_CLIENT_SECRET") and env.get("AZURE_TENANT_ID"):
            oauth = (env["AZURE_CLIENT_ID"], env["AZURE_CLIENT_SECRET"], env["AZURE_TENANT_ID"])
        key, sas = env.get("AZURE_STORAGE_ACCOUNT_KEY"), env.get("AZURE_STORAGE_SAS_TOKEN")
        return cls(account, key=key, sas=sas, oauth=oauth)

    @classmethod
    def from_connection_string(cls, conn: str) -> AzureStorage | None:
        """The account of an Azure Storage connection string (Azurite's included)."""
        parts = {k.lower(): v for k, v in paths.parse_connection_string(conn).items()}
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            return cls(_EMULATOR_ACCOUNT, key=_EMULATOR_KEY, emulator=("127.0.0.1", 10000))
        account = parts.get("accountname")
        if not account:
            return None
        endpoint = parts.get("blobendpoint", "")
        emulator = _emulator_endpoint(endpoint) if endpoint else None
        suffix = parts.get("endpointsuffix") or _DEFAULT_SUFFIX
        host = urlsplit(endpoint).hostname or ""
        if not emulator and host.startswith(f"{account}.blob."):
            suffix = host[len(f"{account}.blob.") :]
        sas = parts.get("sharedaccesssignature")
        return cls(account, key=parts.get("accountkey"), sas=sas, suffix=suffix, emulator=emulator)

    # -- URLs ----------------------------------------------------------------------------

    def hadoop_url(self, path: str) -> str:
        """``path`` as hadoop-azure reaches it (see the module docstring); other paths unchanged."""
        scheme = paths.protocol_of(path)
        if scheme not in AZURE_SCHEMES:
            return path
        authority, _, rest = path.split("://", 1)[1].partition("/")
        container, at, host = authority.partition("@")
        account = host.split(".", 1)[0] if at else self.account
        if self.emulator is not None:
            return f"wasb://{container}@{account}.blob.{self.suffix}/{rest}"
        if at:
            return path  # names its account and endpoint: as written
        return f"abfss://{container}@{account}.dfs.{self.suffix}/{rest}"

    # -- Hadoop settings -----------------------------------------------------------------

    def hadoop_conf(self) -> dict[str, str]:
        """The Hadoop settings with this account's credentials, for its dfs and blob endpoints.

        Only ever set on the running SparkContext's Hadoop configuration (:func:`configure`).
        """
        dfs, blob = f"{self.account}.dfs.{self.suffix}", f"{self.account}.blob.{self.suffix}"
        conf: dict[str, str] = {}
        if self.key:
            conf[f"fs.azure.account.key.{dfs}"] = self.key
            conf[f"fs.azure.account.key.{blob}"] = self.key
        elif self.sas:
            conf[f"fs.azure.account.auth.type.{dfs}"] = "SAS"
            conf[f"fs.azure.sas.token.provider.type.{dfs}"] = _FIXED_SAS_PROVIDER
            conf[f"fs.azure.sas.fixed.token.{dfs}"] = self.sas.lstrip("?")
        elif self.oauth:
            client_id, secret, tenant = self.oauth
            conf[f"fs.azure.account.auth.type.{dfs}"] = "OAuth"
            conf[f"fs.azure.account.oauth.provider.type.{dfs}"] = _CLIENT_CREDS_PROVIDER
            conf[f"fs.azure.account.oauth2.client.id.{dfs}"] = client_id
            conf[f"fs.azure.account.oauth2.client.secret.{dfs}"] = secret
            conf[f"fs.azure.account.oauth2.client.endpoint.{dfs}"] = (
                f"https://login.microsoftonline.com/{tenant}/oauth2/token"
            )
        return conf

    def secrets(self) -> tuple[str, ...]:
        """The credential values (for error-message masking)."""
        return tuple(v for v in (self.key, self.sas, self.oauth[1] if self.oauth else None) if v)

    def proxy_properties(self) -> dict[str, str]:
        """JVM system properties that send plain-HTTP blob requests to the emulator (none for Azure)."""
        if self.emulator is None:
            return {}
        host, port = self.emulator
        return {"http.proxyHost": host, "http.proxyPort": str(port)}

    def java_options(self) -> str:
        """:meth:`proxy_properties` as JVM options, for executors started with the session."""
        return " ".join(f"-D{k}={v}" for k, v in self.proxy_properties().items())


_ENV_NAMES = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_TENANT_ID",
)


@functools.lru_cache(maxsize=8)
def _storage_for(settings: tuple[str | None, ...]) -> AzureStorage | None:
    return AzureStorage.from_env({name: value for name, value in zip(_ENV_NAMES, settings, strict=True) if value})


def current() -> AzureStorage | None:
    """The account of the current environment's Azure settings (cached per settings)."""
    return _storage_for(tuple(os.environ.get(name) or None for name in _ENV_NAMES))


def hadoop_url(path: str) -> str:
    """``path`` as Spark reaches it: Azure URLs through :meth:`AzureStorage.hadoop_url`, others unchanged.

    Raises a ``ValueError`` for a short-form Azure URL (``abfs://container/path``) when the
    environment names no storage account.
    """
    if not is_azure_url(path):
        return path
    storage = current()
    if storage is None:
        authority = path.split("://", 1)[1].split("/", 1)[0]
        if "@" in authority:
            return path
        raise ValueError(
            f"Spark cannot tell the storage account of {path}: set AZURE_STORAGE_CONNECTION_STRING "
            "(or AZURE_STORAGE_ACCOUNT_NAME) as for the pandas engine, or write the URL with its "
            "account, abfss://<container>@<account>.dfs.core.windows.net/<path>"
        )
    return storage.hadoop_url(path)


def configure(session: SparkSession) -> AzureStorage | None:
    """Put the environment's Azure credentials on ``session``'s SparkContext, at run time.

    They go into the Hadoop configuration (never into the Spark conf, which Spark logs at
    start), the redaction pattern is extended on a session started without it, and for an
    emulator the driver JVM's plain-HTTP proxy points at it. Returns the account (None when
    the environment names none).
    """
    storage = current()
    if storage is None:
        return None
    jsc = session.sparkContext._jsc
    hadoop_conf = jsc.hadoopConfiguration()
    for key, value in storage.hadoop_conf().items():
        if hadoop_conf.get(key) != value:
            hadoop_conf.set(key, value)
    spark_conf = jsc.sc().conf()  # the live SparkConf that redaction reads, not a copy
    regex = redaction_regex(spark_conf.get("spark.redaction.regex", None))
    if spark_conf.get("spark.redaction.regex", None) != regex:
        spark_conf.set("spark.redaction.regex", regex)
    system = session.sparkContext._jvm.java.lang.System
    for key, value in storage.proxy_properties().items():
        system.setProperty(key, value)
    return storage


def session_settings(master: str, user_conf: Mapping[str, str]) -> dict[str, str]:
    """Spark conf entries for a session that reaches Azure: the redaction pattern, and for an
    emulator the executors' HTTP proxy (no credentials: see :func:`configure`)."""
    conf = {"spark.redaction.regex": redaction_regex(user_conf.get("spark.redaction.regex"))}
    storage = current()
    if storage is not None and storage.emulator is not None and not master.startswith("local"):
        existing = user_conf.get("spark.executor.extraJavaOptions", "")
        conf["spark.executor.extraJavaOptions"] = f"{existing} {storage.java_options()}".strip()
    return conf
