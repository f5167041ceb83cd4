"""The Spark engine: a Dagster resource over dagster-pyspark and ODIBI's SparkEngineContext.

``SparkEngine`` is the resource a pipeline configures (master URL, Spark conf, Delta,
extra Maven packages). It starts at most one SparkSession per process and hands out
``SparkEngineContext`` objects, which implement the :class:`~odibi_dagster.engines.base.EngineContext`
contract over Spark DataFrames: readers and writers for CSV, JSON, Parquet, Avro, Delta
(overwrite, append, merge, time travel) and JDBC, Spark SQL over temp views registered under
the steps' logical names, snapshots whose schema uses the same Arrow type strings as the
pandas engine, and atomic persistence of the datasets handed from step to step.

Jars (Delta, Avro, JDBC drivers) come from Maven Central through ``spark.jars.packages``.
Ivy keeps them in a stable cache (``~/.cache/odibi_dagster/ivy`` or ``$ODIBI_SPARK_IVY``),
so only the first session of a machine needs the network.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import re
import threading
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import pandas as pd
from pydantic import Field, PrivateAttr

from odibi_dagster.engines import paths
from odibi_dagster.engines.base import DatasetFormat, DatasetRef, Snapshot, WriteInfo

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import DataType

__all__ = [
    "DEFAULT_IVY_DIR",
    "MAVEN_CENTRAL",
    "PACKAGE_ALIASES",
    "SparkEngine",
    "SparkEngineContext",
    "arrow_type_string",
    "avro_package",
    "delta_package",
    "ivy_dir",
    "persist_frame",
    "redact",
]

log = logging.getLogger(__name__)

MAVEN_CENTRAL = "https://repo1.maven.org/maven2"
DEFAULT_IVY_DIR = "~/.cache/odibi_dagster/ivy"
SCALA_BINARY = "2.13"
SQLITE_JDBC = "org.xerial:sqlite-jdbc:3.53.2.1"

#: Short names accepted in ``SparkEngine.packages`` (``avro`` follows the Spark version).
PACKAGE_ALIASES: dict[str, str] = {
    "sqlite": SQLITE_JDBC,
    "sqlite-jdbc": SQLITE_JDBC,
    "postgresql": "org.postgresql:postgresql:42.7.4",
}
_AVRO_ALIASES = {"avro", "spark-avro"}

# Transitive dependencies of the Delta jars (delta-kernel pulls hadoop, parquet, jackson,
# log4j ...) that Spark already ships: excluding them keeps the download small (13 MB
# instead of ~100 MB) and keeps a second, shadowed copy off the classpath.
_PROVIDED_BY_SPARK = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:*",
    "org.apache.logging.log4j:*",
    "org.slf4j:*",
    "com.fasterxml.jackson.core:*",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "org.roaringbitmap:*",
    "io.airlift:aircompressor",
    "org.tukaani:xz",
    "org.scala-lang.modules:scala-parallel-collections_2.13",
    "commons-pool:commons-pool",
)

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

_EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".avro": "avro",
    ".orc": "orc",
    ".delta": "delta",
    ".db": "sqlite",
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
}
_FORMAT_ALIASES = {"jsonl": "json", "ndjson": "json", "sql": "jdbc", "txt": "text"}

_JDBC_DRIVERS = {
    "jdbc:sqlite:": "org.sqlite.JDBC",
    "jdbc:postgresql:": "org.postgresql.Driver",
    "jdbc:mysql:": "com.mysql.cj.jdbc.Driver",
    "jdbc:mariadb:": "org.mariadb.jdbc.Driver",
    "jdbc:sqlserver:": "com.microsoft.sqlserver.jdbc.SQLServerDriver",
    "jdbc:oracle:": "oracle.jdbc.OracleDriver",
    "jdbc:h2:": "org.h2.Driver",
    "jdbc:duckdb:": "org.duckdb.DuckDBDriver",
}

# ODIBI params that steer the engine and are never passed to Spark as reader/writer options.
_CONTROL_PARAMS = {
    "keep_default_na",  # pandas' CSV null tokens (see _with_pandas_nulls)
    "na_values",
    "format",
    "source_type",
    "mode",
    "merge_keys",
    "keys",
    "partition_by",
    "partitionBy",
    "single_file",
    "version",
    "versionAsOf",
    "timestamp",
    "timestampAsOf",
    "schema",
    "options",
    "table",
    "dbtable",
    "query",
    "url",
    "jdbc_url",
    "connection_string",
    "driver",
    "user",
    "password",
    "merge_schema",
    "table_format",
}


# --------------------------------------------------------------------------------------
# Jar resolution
# --------------------------------------------------------------------------------------


def ivy_dir() -> Path:
    """The Ivy home that caches the Spark packages: ``$ODIBI_SPARK_IVY`` or ``~/.cache/odibi_dagster/ivy``."""
    return Path(os.environ.get("ODIBI_SPARK_IVY") or DEFAULT_IVY_DIR).expanduser()


def _patch_candidates(version: str) -> list[str]:
    """``4.4.1`` -> ``[4.4.1, 4.4.0]``: the same minor line, newest first."""
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version)
    if not m:
        return [version]
    major, minor, patch = (int(g) for g in m.groups())
    return [f"{major}.{minor}.{p}" for p in range(patch, -1, -1)]


def _cached_in_ivy(ivy: Path, group: str, artifact: str, version: str) -> bool:
    module = ivy / "cache" / group / artifact
    return (module / f"ivy-{version}.xml").exists() and any((module / "jars").glob(f"*-{version}.jar"))


@functools.lru_cache(maxsize=64)
def _published_versions(group: str, artifact: str, repos: tuple[str, ...]) -> frozenset[str] | None:
    for repo in repos:
        url = f"{repo.rstrip('/')}/{group.replace('.', '/')}/{artifact}/maven-metadata.xml"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                root = ET.fromstring(resp.read())
        except Exception as exc:  # offline, proxy, 404: fall through to the next repo
            log.debug("no maven metadata at %s: %s", url, exc)
            continue
        return frozenset(v.text for v in root.iter("version") if v.text)
    return None


def _resolve_version(
    group: str, artifact: str, version: str, ivy: Path, repos: Iterable[str] = (MAVEN_CENTRAL,)
) -> str:
    """The newest version of ``group:artifact`` in ``version``'s minor line that is available.

    PyPI can be ahead of Maven Central (delta-spark 4.4.1 and pyspark 4.0.5 have no jars
    there), so the exact version may not exist. The Ivy cache is checked first, without
    network; then the repository's ``maven-metadata.xml``; otherwise ``version`` is kept
    and Ivy reports the failure.
    """
    candidates = _patch_candidates(version)
    for v in candidates:
        if _cached_in_ivy(ivy, group, artifact, v):
            return v
    published = _published_versions(group, artifact, tuple(repos))
    if published:
        for v in candidates:
            if v in published:
                return v
    return version


def delta_package(ivy: Path | None = None, repos: Iterable[str] = (MAVEN_CENTRAL,)) -> str:
    """The Maven coordinate of the Delta jar matching the installed delta-spark and pyspark.

    Mirrors ``delta.pip_utils.configure_spark_with_delta_pip`` (``delta-spark_<spark minor>_2.13``
    from Delta 4.1 on), falling back to the newest published patch of the same minor line.
    """
    from importlib.metadata import version as dist_version

    import pyspark

    delta_version = dist_version("delta_spark")
    spark_minor = ".".join(pyspark.__version__.split(".")[:2])
    major_minor = tuple(int(x) for x in re.findall(r"\d+", delta_version)[:2])
    artifact = f"delta-spark_{spark_minor}_{SCALA_BINARY}" if major_minor >= (4, 1) else f"delta-spark_{SCALA_BINARY}"
    version = _resolve_version("io.delta", artifact, delta_version, ivy or ivy_dir(), repos)
    return f"io.delta:{artifact}:{version}"


def avro_package(ivy: Path | None = None, repos: Iterable[str] = (MAVEN_CENTRAL,)) -> str:
    """The Maven coordinate of ``spark-avro`` for the installed pyspark (same minor line)."""
    import pyspark

    artifact = f"spark-avro_{SCALA_BINARY}"
    version = _resolve_version("org.apache.spark", artifact, pyspark.__version__, ivy or ivy_dir(), repos)
    return f"org.apache.spark:{artifact}:{version}"


def _merge_csv(*parts: str | Iterable[str] | None) -> str:
    """Join comma-separated lists, dropping blanks and duplicates, keeping order."""
    seen: dict[str, None] = {}
    for part in parts:
        if not part:
            continue
        items = part.split(",") if isinstance(part, str) else part
        for item in items:
            if item.strip():
                seen.setdefault(item.strip(), None)
    return ",".join(seen)


# --------------------------------------------------------------------------------------
# Secrets and small helpers
# --------------------------------------------------------------------------------------

_PASSWORD_IN_TEXT = re.compile(r"(?i)\b(password|pwd|passwd)=([^;&\s'\"]+)")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret value and every ``password=...`` pair replaced by ``***``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return _PASSWORD_IN_TEXT.sub(lambda m: f"{m.group(1)}=***", text)


_COMPRESSION_SUFFIXES = {".gz", ".bz2", ".snappy", ".zst", ".zstd", ".lz4", ".deflate", ".xz"}


def _dir_format(directory: Path | None) -> str | None:
    """The format of a local directory of data files (Spark's part files), from their extension."""
    if directory is None or not directory.is_dir():
        return None
    for _root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith((".", "_")):
                continue
            suffixes = [x.lower() for x in Path(name).suffixes]
            while suffixes and suffixes[-1] in _COMPRESSION_SUFFIXES:
                suffixes.pop()
            if suffixes and suffixes[-1] in _EXTENSION_FORMATS:
                return _EXTENSION_FORMATS[suffixes[-1]]
    return None


def _option_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _qualify(path: str) -> str:
    """Absolute local paths (the JVM may resolve relative ones against another cwd); URIs unchanged."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", path) and not re.match(r"^[A-Za-z]:[\\/]", path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def _local_path(path: str) -> Path | None:
    if path.startswith("file:"):
        return Path(re.sub(r"^file:(//)?", "", path))
    if "://" in path:
        return None
    return Path(path)


# --------------------------------------------------------------------------------------
# Type mapping
# --------------------------------------------------------------------------------------


def arrow_type_string(dt: DataType) -> str:
    """The Arrow type string the pandas engine reports for a column of Spark type ``dt``.

    Integers map to ``int64`` and floats to ``double`` because that is what the pandas
    engine shows for the same data (Spark's CSV inference picks ``int`` where pandas picks
    ``int64``); both engines then report identical schemas.
    """
    from pyspark.sql import types as T

    if isinstance(dt, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return "int64"
    if isinstance(dt, T.FloatType | T.DoubleType):
        return "double"
    if isinstance(dt, T.StringType | T.VarcharType | T.CharType):
        return "string"
    if isinstance(dt, T.BooleanType):
        return "bool"
    if isinstance(dt, T.DateType):
        return "date32[day]"
    if isinstance(dt, T.TimestampType | T.TimestampNTZType):
        return "timestamp[us]"
    if isinstance(dt, T.DecimalType):
        return f"decimal128({dt.precision}, {dt.scale})"
    if isinstance(dt, T.BinaryType):
        return "binary"
    if isinstance(dt, T.NullType):
        return "null"
    if isinstance(dt, T.DayTimeIntervalType):
        return "duration[us]"
    if isinstance(dt, T.ArrayType):
        return f"list<item: {arrow_type_string(dt.elementType)}>"
    if isinstance(dt, T.MapType):
        return f"map<{arrow_type_string(dt.keyType)}, {arrow_type_string(dt.valueType)}>"
    if isinstance(dt, T.StructType):
        inner = ", ".join(f"{f.name}: {arrow_type_string(f.dataType)}" for f in dt.fields)
        return f"struct<{inner}>"
    return dt.simpleString()


# --------------------------------------------------------------------------------------
# The engine context
# --------------------------------------------------------------------------------------


class SparkEngineContext:
    """ODIBI's EngineContext over Spark DataFrames (one per step execution).

    ``secrets`` is an optional mapping or callable consulted by :meth:`get_secret` before
    the environment. Params whose value is ``{"secret": "NAME"}`` are resolved through it.
    """

    engine = "spark"

    def __init__(
        self,
        spark: SparkSession,
        secrets: Mapping[str, str] | Callable[[str], str | None] | None = None,
    ) -> None:
        self.spark = spark
        self._secrets = secrets
        self._views: set[str] = set()
        self._global_views: set[str] = set()
        self._secret_values: set[str] = set()

    # -- secrets -------------------------------------------------------------------------

    def get_secret(self, key: str) -> str:
        """The secret ``key`` from the configured secrets, else the environment variable ``key``."""
        value: str | None = None
        if callable(self._secrets):
            value = self._secrets(key)
        elif self._secrets is not None:
            value = self._secrets.get(key)
        if value is None:
            value = os.environ.get(key)
        if value is None and key.upper() != key:
            value = os.environ.get(key.upper())
        if value is None:
            raise KeyError(f"secret {key!r} is not set (environment variable {key})")
        self._secret_values.add(value)
        return value

    def _resolve_secrets(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in params.items():
            if isinstance(value, Mapping) and set(value) == {"secret"}:
                value = self.get_secret(str(value["secret"]))
            out[key] = value
        for key in ("password", "pwd"):
            if isinstance(out.get(key), str):
                self._secret_values.add(out[key])
        return out

    def _redact(self, text: str) -> str:
        return redact(text, self._secret_values)

    # -- conversions ---------------------------------------------------------------------

    def _to_spark(self, df: Any) -> DataFrame:
        from pyspark.sql import DataFrame as SparkDataFrame

        if isinstance(df, SparkDataFrame):
            return df
        if isinstance(df, DatasetRef):
            return self.load(df)
        if isinstance(df, pd.DataFrame):
            return self.spark.createDataFrame(df)
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - pyarrow is a dependency
            pa = None
        if pa is not None:
            if isinstance(df, pa.RecordBatchReader):
                df = df.read_all()
            if isinstance(df, pa.Table):
                return self.spark.createDataFrame(df)
        raise TypeError(f"the spark engine cannot use a {type(df).__name__} as a frame")

    def to_pandas(self, df: Any) -> pd.DataFrame:
        """The whole frame as pandas (``function`` steps only)."""
        if isinstance(df, pd.DataFrame):
            return df
        return self._to_spark(df).toPandas()

    # -- format resolution ---------------------------------------------------------------

    def read_schema(self, df: Any, fmt: str) -> str | None:
        """The inferred schema (StructType JSON) of a CSV/JSON read, to skip inference on re-reads."""
        if fmt not in ("csv", "json", "jsonl"):
            return None
        return self._to_spark(df).schema.json()

    def source_format(self, source: str, params: dict[str, Any]) -> str:
        """The reader format ``read(source, **params)`` would use (``csv``, ``delta``, ``jdbc``...)."""
        return self._format_of(str(source), dict(params))

    def _format_of(self, path: str, params: dict[str, Any]) -> str:
        fmt = params.pop("source_type", None) or params.pop("format", None)
        if fmt:
            fmt = str(fmt).lower()
            return _FORMAT_ALIASES.get(fmt, fmt)
        if path.startswith("jdbc:") or any(k in params for k in ("jdbc_url", "url")):
            return "jdbc"
        suffix = Path(path.rstrip("/")).suffix.lower()
        if suffix in _EXTENSION_FORMATS:
            return _EXTENSION_FORMATS[suffix]
        if self._exists(f"{_qualify(path).rstrip('/')}/_delta_log"):
            return "delta"
        return _dir_format(_local_path(_qualify(path))) or "parquet"

    @staticmethod
    def _options(params: Mapping[str, Any]) -> dict[str, str]:
        """Reader/writer options: scalar params minus ODIBI's control params, plus ``options``."""
        opts: dict[str, str] = {}
        for key, value in params.items():
            if key in _CONTROL_PARAMS or value is None:
                continue
            if isinstance(value, str | int | float | bool):
                opts[key] = _option_value(value)
            else:
                log.debug("ignoring non-scalar param %r for spark options", key)
        for key, value in (params.get("options") or {}).items():
            opts[str(key)] = _option_value(value)
        return opts

    # -- Hadoop filesystem helpers (work for local paths and abfs:// alike) ----------------

    def _fs(self, path: str) -> tuple[Any, Any]:
        jvm = self.spark._jvm
        jpath = jvm.org.apache.hadoop.fs.Path(path)
        return jpath.getFileSystem(self.spark._jsc.hadoopConfiguration()), jpath

    def _exists(self, path: str) -> bool:
        local = _local_path(path)
        if local is not None:
            return local.exists()
        fs, jpath = self._fs(path)
        return bool(fs.exists(jpath))

    def _sibling_tmp(self, target: str, tag: str) -> str:
        # The temp pattern of engines.paths (writer's host and pid), so leftovers can be told apart.
        parent, _, name = target.rstrip("/").rpartition("/")
        return f"{parent}/{paths.temp_name(name)}" + (".old" if tag == "old" else "")

    def _remove_stale_temps(self, target: str) -> None:
        """Remove what killed writes to ``target`` left beside it (see ``paths.remove_stale_temps``)."""
        parent, _, name = target.rstrip("/").rpartition("/")
        try:
            fs, jparent = self._fs(parent)
            if not fs.exists(jparent):
                return
            now = time.time()
            for status in fs.listStatus(jparent):
                entry = status.getPath()
                if paths.is_stale_temp(entry.getName(), name, status.getModificationTime() / 1000, now):
                    fs.delete(entry, True)
        except Exception:
            log.debug("could not list %s for stale temp files", parent, exc_info=True)

    def _replace(self, tmp: str, target: str) -> None:
        """Move ``tmp`` to ``target``, replacing what was there (old copy removed last)."""
        fs, t = self._fs(target)
        _, s = self._fs(tmp)
        backup = None
        if fs.exists(t):
            backup = self._fs(self._sibling_tmp(target, "old"))[1]
            if not fs.rename(t, backup):
                raise OSError(f"could not move {target} aside")
        else:
            fs.mkdirs(t.getParent())
        if not fs.rename(s, t):
            if backup is not None:
                fs.rename(backup, t)
            raise OSError(f"could not move {tmp} to {target}")
        if backup is not None:
            fs.delete(backup, True)

    # -- read ----------------------------------------------------------------------------

    def read(self, source: str, **params: Any) -> DataFrame:
        """Read ``source`` into a lazy DataFrame.

        The format comes from ``source_type``/``format`` or the extension (a directory with a
        ``_delta_log`` is Delta). CSV defaults to ``header`` and ``inferSchema``; JSON arrays
        are detected; Delta takes ``version``/``versionAsOf`` or ``timestamp``/``timestampAsOf``;
        ``jdbc`` takes ``url``/``jdbc_url``, ``table``/``dbtable`` or ``query``, ``driver``,
        ``user``, ``password``; ``sqlite`` reads ``table``/``query`` from the database file
        ``source``; ``table`` reads a catalog table. Other scalar params are Spark options.
        """
        params = self._resolve_secrets(params)
        fmt = self._format_of(source, params)
        if fmt in ("jdbc", "sqlite"):
            return self._read_jdbc(source, fmt, params)
        if fmt == "table":
            return self.spark.table(source)
        path = _qualify(source)
        reader = self.spark.read.format(fmt)
        if params.get("schema") is not None:
            reader = reader.schema(params["schema"])
        options = self._read_defaults(fmt, path)
        options.update(self._options(params))
        if fmt == "delta":
            version = params.get("versionAsOf", params.get("version"))
            timestamp = params.get("timestampAsOf", params.get("timestamp"))
            if version is not None:
                options["versionAsOf"] = str(int(version))
            if timestamp is not None:
                options["timestampAsOf"] = str(timestamp)
        tokens = _csv_null_tokens(params) if fmt == "csv" else None
        pandas_nulls = (
            tokens is not None
            and params.get("schema") is None
            and str(options.get("inferSchema", "true")).lower() == "true"
            and "nullValue" not in options
        )
        try:
            if pandas_nulls:
                options["inferSchema"] = "false"
                return _with_pandas_nulls(reader.options(**options).load(path), tokens or [])
            return reader.options(**options).load(path)
        except Exception as exc:
            raise self._format_error(exc, fmt, f"read {path}") from None

    def _read_defaults(self, fmt: str, path: str) -> dict[str, str]:
        if fmt == "csv":
            opts = {"header": "true", "inferSchema": "true"}
            if path.lower().endswith(".tsv"):
                opts["sep"] = "\t"
            return opts
        if fmt == "json" and path.lower().endswith(".json"):
            local = _local_path(path)
            if local is not None and local.is_file():
                with local.open("rb") as fh:
                    head = fh.read(4096).lstrip()
                if head.startswith(b"["):  # a JSON array, not JSON Lines
                    return {"multiLine": "true"}
        return {}

    def _format_error(self, exc: Exception, fmt: str, what: str) -> Exception:
        msg = self._redact(str(exc))
        if fmt == "avro" and "avro" in msg.lower() and "data source" in msg.lower():
            return RuntimeError(f"cannot {what}: the spark-avro jar is not loaded; add 'avro' to SparkEngine.packages")
        return RuntimeError(self._redact(f"cannot {what} as {fmt}: {_error_summary(exc)}"))

    # -- JDBC ----------------------------------------------------------------------------

    def _jdbc_options(self, location: str, fmt: str, params: dict[str, Any], writing: bool) -> dict[str, str]:
        url = params.get("url") or params.get("jdbc_url")
        conn = params.get("connection_string")
        if not url and isinstance(conn, str) and conn.startswith("jdbc:"):
            url = conn
        if not url and location.startswith("jdbc:"):
            url = location
        if not url and fmt == "sqlite":
            url = f"jdbc:sqlite:{_qualify(location)}"
        if not url:
            raise ValueError("a jdbc source needs 'url' or 'jdbc_url'")
        table = params.get("table") or params.get("dbtable")
        query = params.get("query")
        if not table and not query and location and not location.startswith("jdbc:") and fmt == "jdbc":
            table = location  # ODIBI: read("users", source_type="jdbc", jdbc_url=...)
        if writing and not table:
            raise ValueError("a jdbc write needs 'table'")
        if not table and not query:
            raise ValueError("a jdbc read needs 'table' or 'query'")
        opts: dict[str, str] = {"url": str(url)}
        if query and not writing:
            opts["query"] = str(query)
        else:
            opts["dbtable"] = str(table)
        driver = params.get("driver") or next(
            (d for prefix, d in _JDBC_DRIVERS.items() if str(url).startswith(prefix)), None
        )
        if driver:
            opts["driver"] = str(driver)  # DriverManager cannot see jars added at runtime
        for key in ("user", "password"):
            if params.get(key) is not None:
                opts[key] = str(params[key])
        opts.update(self._options(params))
        return opts

    def _read_jdbc(self, source: str, fmt: str, params: dict[str, Any]) -> DataFrame:
        opts = self._jdbc_options(source, fmt, params, writing=False)
        try:
            df = self.spark.read.format("jdbc").options(**opts).load()
        except Exception as exc:
            raise RuntimeError(self._redact(f"jdbc read from {opts['url']} failed: {_error_summary(exc)}")) from None
        return df

    def _write_jdbc(self, sdf: DataFrame, target: str, fmt: str, mode: str, params: dict[str, Any]) -> WriteInfo:
        if mode not in ("overwrite", "append"):
            raise ValueError(f"jdbc writes support mode overwrite or append, not {mode!r}")
        opts = self._jdbc_options(target, fmt, params, writing=True)
        if opts["url"].startswith("jdbc:sqlite:"):
            sdf = sdf.coalesce(1)  # SQLite has a single writer; parallel partitions would lock
        observed, obs = _observe(sdf)
        try:
            observed.write.format("jdbc").options(**opts).mode(mode).save()
        except Exception as exc:
            raise RuntimeError(
                self._redact(f"jdbc write to {opts['url']} table {opts['dbtable']} failed: {_error_summary(exc)}")
            ) from None
        uri = self._redact(f"{opts['url']}#{opts['dbtable']}")
        return WriteInfo(uri=uri, format="jdbc", rows=_observed_rows(obs), extra={"mode": mode})

    # -- write ---------------------------------------------------------------------------

    def write(self, df: Any, target: str, **params: Any) -> WriteInfo:
        """Write ``df`` to ``target`` and describe what was written.

        ``mode``: ``overwrite`` (default; file formats are written to a hidden sibling and
        swapped in, Delta commits atomically), ``append``, or ``merge`` (Delta only: upsert on
        ``merge_keys``/``keys``, creating the table when missing). ``partition_by`` partitions
        the output; ``single_file`` writes one file at ``target`` instead of a directory.
        For Delta, ``WriteInfo.version`` is the table version after the write.
        """
        params = self._resolve_secrets(params)
        sdf = self._to_spark(df)
        fmt = self._format_of(target, params)
        mode = str(params.get("mode") or "overwrite").lower()
        if mode == "merge" and fmt != "delta":
            raise ValueError(f"mode 'merge' needs format delta, not {fmt}")
        if fmt in ("jdbc", "sqlite"):
            return self._write_jdbc(sdf, target, fmt, mode, params)
        if fmt == "table":
            observed, obs = _observe(sdf)
            writer = observed.write.mode(mode).options(**self._options(params))
            if params.get("table_format"):
                writer = writer.format(str(params["table_format"]))
            writer.saveAsTable(target)
            return WriteInfo(uri=target, format="table", rows=_observed_rows(obs), extra={"mode": mode})
        path = _qualify(target)
        if fmt == "delta":
            return self._write_delta(sdf, path, mode, params)
        return self._write_files(sdf, path, fmt, mode, params)

    def _write_files(self, sdf: DataFrame, path: str, fmt: str, mode: str, params: Mapping[str, Any]) -> WriteInfo:
        options = {"header": "true"} if fmt == "csv" else {}
        options.update(self._options(params))
        partition_by = _as_list(params.get("partition_by") or params.get("partitionBy"))
        single_file = bool(params.get("single_file"))
        if single_file:
            if mode != "overwrite" or partition_by:
                raise ValueError("single_file writes support mode overwrite without partition_by only")
            sdf = sdf.coalesce(1)
        observed, obs = _observe(sdf)

        def save(dest: str, save_mode: str) -> None:
            writer = observed.write.format(fmt).mode(save_mode).options(**options)
            if partition_by:
                writer = writer.partitionBy(*partition_by)
            writer.save(dest)

        self._remove_stale_temps(path)
        tmp = self._sibling_tmp(path, "tmp")
        try:
            if single_file:
                save(tmp, "overwrite")
                self._move_single_part(tmp, path)
            elif mode == "overwrite":
                save(tmp, "overwrite")
                self._replace(tmp, path)
            else:
                save(path, mode)
        except Exception as exc:
            self._remove_quietly(tmp)  # a failed write leaves the target as it was, and no litter
            raise self._format_error(exc, fmt, f"write {path}") from None
        return WriteInfo(uri=path, format=fmt, rows=_observed_rows(obs), extra={"mode": mode})

    def _remove_quietly(self, path: str) -> None:
        try:
            fs, jpath = self._fs(path)
            if fs.exists(jpath):
                fs.delete(jpath, True)
        except Exception:
            log.debug("could not remove %s", path)

    def _move_single_part(self, tmp: str, target: str) -> None:
        fs, tdir = self._fs(tmp)
        parts = [s.getPath() for s in fs.listStatus(tdir) if s.getPath().getName().startswith("part-")]
        if len(parts) != 1:
            raise OSError(f"expected one part file in {tmp}, found {len(parts)}")
        part_tmp = self._fs(self._sibling_tmp(target, "part"))[1]
        fs.rename(parts[0], part_tmp)
        fs.delete(tdir, True)
        self._replace(str(part_tmp.toString()), target)

    def _write_delta(self, sdf: DataFrame, path: str, mode: str, params: Mapping[str, Any]) -> WriteInfo:
        from delta.tables import DeltaTable

        options = self._options(params)
        if params.get("merge_schema"):
            options["mergeSchema"] = "true"
        partition_by = _as_list(params.get("partition_by") or params.get("partitionBy"))
        extra: dict[str, Any] = {"mode": mode}
        rows: int | None = None
        try:
            if mode == "merge" and DeltaTable.isDeltaTable(self.spark, path):
                keys = _as_list(params.get("merge_keys") or params.get("keys"))
                if not keys:
                    raise ValueError("mode 'merge' needs 'merge_keys' (or 'keys')")
                condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
                builder = DeltaTable.forPath(self.spark, path).alias("t").merge(sdf.alias("s"), condition)
                if str(options.get("mergeSchema", "")).lower() == "true":
                    builder = builder.withSchemaEvolution()
                builder.whenMatchedUpdateAll().whenNotMatchedInsertAll().execute()
            else:
                if mode == "merge" and not _as_list(params.get("merge_keys") or params.get("keys")):
                    raise ValueError("mode 'merge' needs 'merge_keys' (or 'keys')")
                observed, obs = _observe(sdf)
                save_mode = "overwrite" if mode == "merge" else mode  # merge into nothing = create
                writer = observed.write.format("delta").mode(save_mode).options(**options)
                if partition_by:
                    writer = writer.partitionBy(*partition_by)
                writer.save(path)
                rows = _observed_rows(obs)
        except ValueError:
            raise
        except Exception as exc:
            raise self._format_error(exc, "delta", f"write {path}") from None
        version, operation, metrics = self._delta_last_commit(path)
        extra["operation"] = operation
        if operation == "MERGE":
            rows = _int_or_none(metrics.get("numSourceRows"))
            for key in ("numTargetRowsInserted", "numTargetRowsUpdated", "numTargetRowsDeleted"):
                if key in metrics:
                    extra[key] = _int_or_none(metrics[key])
        elif rows is None:
            rows = _int_or_none(metrics.get("numOutputRows"))
        return WriteInfo(uri=path, format="delta", rows=rows, version=version, extra=extra)

    def _delta_last_commit(self, path: str) -> tuple[int, str, dict[str, str]]:
        from delta.tables import DeltaTable

        row = DeltaTable.forPath(self.spark, path).history(1).select("version", "operation", "operationMetrics").first()
        return int(row["version"]), str(row["operation"]), dict(row["operationMetrics"] or {})

    # -- SQL -----------------------------------------------------------------------------

    def register_temp(self, name: str, df: Any) -> None:
        """Make ``df`` queryable as ``name`` (a temp view; a DatasetRef is loaded lazily)."""
        sdf = self.load(df) if isinstance(df, DatasetRef) else self._to_spark(df)
        if sdf.sparkSession is not self.spark:
            # A frame from another session (the step has its own child session): hand it over
            # through a global temp view, lazily; temp views only live in their own session.
            bridge = f"odibi_{uuid.uuid4().hex}"
            sdf.createGlobalTempView(bridge)
            self._global_views.add(bridge)
            sdf = self.spark.table(f"global_temp.{bridge}")
        sdf.createOrReplaceTempView(name)
        self._views.add(name)

    def execute_sql(self, query: str) -> DataFrame:
        """Run ``query`` with Spark SQL over the registered temp views (lazy)."""
        return self.spark.sql(query)

    # -- samples and snapshots -----------------------------------------------------------

    def collect_sample(self, df: Any, n: int = 5) -> pd.DataFrame:
        """The first ``n`` rows as pandas (``limit(n).toPandas()``)."""
        if isinstance(df, pd.DataFrame):
            return df.head(n)
        return self._to_spark(df).limit(n).toPandas()

    def snapshot(self, df: Any, sample_rows: int = 5) -> Snapshot:
        """Row count, schema as Arrow type strings (as the pandas engine reports) and a sample."""
        sdf = self._to_spark(df)
        schema = tuple((f.name, arrow_type_string(f.dataType)) for f in sdf.schema.fields)
        sample = self.collect_sample(sdf, sample_rows) if sample_rows > 0 else None
        return Snapshot(row_count=int(sdf.count()), schema=schema, sample=sample)

    # -- persistence between steps -------------------------------------------------------

    def load(self, ref: DatasetRef) -> DataFrame:
        """A lazy DataFrame over a persisted dataset (all its partition paths)."""
        paths = [_qualify(p) for p in ref.paths]
        if not paths:
            raise ValueError("a DatasetRef needs at least one path")
        if ref.format in ("delta", "source"):
            if ref.format == "delta":
                frames = [self.spark.read.format("delta").load(p) for p in paths]
            else:
                frames = [self._source_frame(p) for p in ref.paths]
            out = frames[0]
            for frame in frames[1:]:
                out = out.unionByName(frame, allowMissingColumns=True)
            return out
        return self.spark.read.parquet(*paths)

    def _source_frame(self, manifest_path: str) -> DataFrame:
        from odibi_dagster.engines.source_ref import verified_manifest

        manifest = verified_manifest(manifest_path)
        params = dict(manifest.params)
        if manifest.read_schema and params.get("schema") is None:
            from pyspark.sql.types import StructType

            params["schema"] = StructType.fromJson(json.loads(manifest.read_schema))
        return self.read(manifest.source, **params)

    def persist(self, df: Any, path: str, format: DatasetFormat = "delta") -> WriteInfo:
        """Persist ``df`` at ``path`` for the next step: Delta (transactional overwrite,
        schema replaced) or Parquet (written to a hidden sibling, then renamed into place)."""
        sdf = self._to_spark(df)
        target = _qualify(path)
        if format == "delta":
            return self._write_delta(sdf, target, "overwrite", {"overwriteSchema": "true"})
        if format == "parquet":
            return self._write_files(sdf, target, "parquet", "overwrite", {})
        raise ValueError(f"persist supports delta or parquet, not {format!r}")

    def close(self) -> None:
        """Drop the temp views this context registered (the session itself stays up)."""
        for name in list(self._views):
            try:
                self.spark.catalog.dropTempView(name)
            except Exception:  # the session may already be stopped
                log.debug("could not drop temp view %s", name)
        self._views.clear()
        for name in list(self._global_views):
            try:
                self.spark.catalog.dropGlobalTempView(name)
            except Exception:
                log.debug("could not drop global temp view %s", name)
        self._global_views.clear()


def _observe(sdf: DataFrame) -> tuple[DataFrame, Any]:
    """Count rows while the write runs instead of a second pass over the data."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    obs = Observation()
    return sdf.observe(obs, F.count(F.lit(1)).alias("rows")), obs


def _observed_rows(obs: Any) -> int | None:
    # Observation.get blocks until an action fires; a write that did nothing
    # (mode ignore) never fires, so peek first.
    try:
        if obs._jo is None or obs._jo.getOrEmpty().isEmpty():
            return None
        return int(obs.get["rows"])
    except Exception:
        return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _error_summary(exc: BaseException, limit: int = 3) -> str:
    """The meaningful head of an error: the Java exception's own message, not py4j's wrapper
    or the stack trace."""
    text = ""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        try:
            text = str(java.toString())
        except Exception:
            text = ""
    text = text or str(exc)
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.strip().startswith(("at ", "...", "An error occurred while calling", "Suppressed:"))
    ]
    return " | ".join(lines[:limit])[:2000] or type(exc).__name__


def persist_frame(df: DataFrame, path: str, format: DatasetFormat = "delta") -> WriteInfo:
    """Persist a Spark DataFrame at ``path`` (Delta or Parquet) in its own session (IO manager hook)."""
    ctx = SparkEngineContext(df.sparkSession)
    return ctx.persist(df, path, format)


# --------------------------------------------------------------------------------------
# The resource
# --------------------------------------------------------------------------------------

_session_lock = threading.Lock()
_owned_session: SparkSession | None = None  # the session this module started in this process
_atexit_registered = False


def _stop_owned_session() -> None:
    global _owned_session
    session, _owned_session = _owned_session, None
    if session is not None:
        try:
            session.stop()
        except Exception:  # interpreter shutdown: the gateway may be gone already
            log.debug("stopping the spark session failed", exc_info=True)


class SparkEngine(dg.ConfigurableResource):
    """The Spark engine resource: one SparkSession per process, Delta and extra jars configured.

    Built on dagster-pyspark: the session is created by its ``LazyPySparkResource`` from the
    conf computed here (master, app name, Delta extension and catalog, ``spark.jars.packages``
    with a stable Ivy cache), only when a step first needs it. A session that was already
    running when the resource started (a notebook's, a test suite's) is used as it is and
    never stopped; a session this resource started is stopped after execution and at exit.
    """

    master: str = Field(default="local[*]", description="Spark master URL: local[*], spark://host:7077, ...")
    app_name: str = Field(default="odibi", description="Spark application name")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark configuration")
    delta: bool = Field(default=True, description="Configure Delta Lake (jars, SQL extension, catalog)")
    packages: list[str] = Field(
        default_factory=list,
        description="Extra Maven coordinates, or aliases: avro, sqlite, postgresql",
    )

    _session: Any = PrivateAttr(default=None)
    _owns_session: bool = PrivateAttr(default=False)

    # -- configuration -------------------------------------------------------------------

    def resolved_packages(self) -> list[str]:
        """The Maven coordinates for ``spark.jars.packages``: Delta, aliases expanded, user's."""
        ivy = Path(self.spark_conf.get("spark.jars.ivy") or ivy_dir()).expanduser()
        repos = (*_as_list(self.spark_conf.get("spark.jars.repositories")), MAVEN_CENTRAL)
        coords: list[str] = []
        if self.delta:
            coords.append(delta_package(ivy, repos))
        for pkg in self.packages:
            name = pkg.strip()
            if name.lower() in _AVRO_ALIASES or name in (
                f"org.apache.spark:spark-avro_{SCALA_BINARY}",
                "org.apache.spark:spark-avro",
            ):
                coords.append(avro_package(ivy, repos))
            elif name.lower() in PACKAGE_ALIASES:
                coords.append(PACKAGE_ALIASES[name.lower()])
            elif name.count(":") == 2:
                coords.append(name)
            else:
                raise ValueError(f"package {name!r} is not group:artifact:version nor a known alias")
        coords.extend(_as_list(self.spark_conf.get("spark.jars.packages")))
        return _merge_csv(coords).split(",") if coords else []

    def session_conf(self) -> dict[str, str]:
        """The full Spark conf the session is started with (user's ``spark_conf`` wins)."""
        conf: dict[str, str] = {
            "spark.master": self.master,
            "spark.app.name": self.app_name,
            "spark.jars.ivy": str(ivy_dir()),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }
        if self.delta:
            conf["spark.sql.extensions"] = _DELTA_EXTENSION
            conf["spark.sql.catalog.spark_catalog"] = _DELTA_CATALOG
            if self.master.startswith("local"):
                # Delta reads its log with 50 partitions by default: seconds of overhead per
                # read on a laptop for no gain.
                conf["spark.databricks.delta.snapshotPartitions"] = "2"
        user = dict(self.spark_conf)
        conf.update({k: str(v) for k, v in user.items()})
        if self.delta:
            conf["spark.sql.extensions"] = _merge_csv(user.get("spark.sql.extensions"), _DELTA_EXTENSION)
        packages = self.resolved_packages()
        if packages:
            conf["spark.jars.packages"] = ",".join(packages)
            conf["spark.jars.excludes"] = _merge_csv(_PROVIDED_BY_SPARK, user.get("spark.jars.excludes"))
        return conf

    # -- session lifecycle ---------------------------------------------------------------

    @property
    def spark_session(self) -> SparkSession:
        """The process's SparkSession, started on first use."""
        session = self._session
        if session is None or session.sparkContext._jsc is None:
            session = self._start_session()
        return session

    @property
    def owns_session(self) -> bool:
        """Whether this resource started the session (and so stops it)."""
        return self._owns_session

    def _start_session(self) -> SparkSession:
        global _owned_session, _atexit_registered
        from dagster_pyspark import LazyPySparkResource
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        with _session_lock:
            if SparkContext._active_spark_context is not None:
                # Someone else's session (or ours from another resource instance): use it as is.
                # The process's default session, not the thread's active one: that may be a
                # step's child session (see `context`).
                session = SparkSession.builder.getOrCreate()
                self._owns_session = False
                self._adopt(session)
            else:
                conf = self.session_conf()
                try:
                    session = LazyPySparkResource(spark_config=conf).spark_session
                except Exception as exc:
                    raise RuntimeError(
                        "could not start Spark "
                        f"(master {self.master}, packages {conf.get('spark.jars.packages', '-')}, "
                        f"ivy cache {conf['spark.jars.ivy']}): the first start downloads the jars "
                        "from Maven Central, later starts use the cache offline; "
                        f"{_error_summary(exc)}"
                    ) from exc
                self._owns_session = True
                _owned_session = session
                if not _atexit_registered:
                    atexit.register(_stop_owned_session)
                    _atexit_registered = True
            self._session = session
            return session

    def _adopt(self, session: SparkSession) -> None:
        """Apply the runtime-modifiable part of ``spark_conf`` to a session we did not start."""
        running = session.sparkContext.master
        if running != self.master:
            log.info("SparkEngine(master=%s) is using the running session on %s", self.master, running)
        self._apply_runtime_conf(session)
        if self.delta:
            extensions = session.sparkContext.getConf().get("spark.sql.extensions", "") or ""
            if _DELTA_EXTENSION not in extensions:
                log.warning(
                    "SparkEngine(delta=True) is using a running SparkSession without the Delta "
                    "extension; Delta reads and writes will fail"
                )

    def _apply_runtime_conf(self, session: SparkSession) -> None:
        """Set the runtime-modifiable entries of ``spark_conf`` on ``session``."""
        for key, value in self.spark_conf.items():
            try:
                if session.conf.isModifiable(key):
                    session.conf.set(key, value)
            except Exception:
                log.debug("could not set %s on session", key)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Nothing eager: the session starts when a step first asks for it."""

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Stop the session if this resource started it."""
        self.stop()

    def stop(self) -> None:
        """Stop the session if this resource started it; a borrowed session is left running."""
        global _owned_session
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            with _session_lock:
                if _owned_session is session:
                    _owned_session = None
                session.stop()
        self._owns_session = False

    def context(self, secrets: Mapping[str, str] | Callable[[str], str | None] | None = None) -> SparkEngineContext:
        """A new SparkEngineContext (one per step execution) on its own child session.

        ``newSession()`` shares the SparkContext, jars and table cache but has its own temp
        views and SQL conf, so steps running at the same time in one process (in threads)
        cannot see or replace each other's ``bronze``/``silver`` views. Spark Connect
        sessions have no child sessions.
        """
        session = self.spark_session
        try:
            child = session.newSession()
        except Exception:  # Spark Connect: keep the session as it is
            log.debug("newSession() not available; steps share the session's temp views")
        else:
            # A child starts from the SparkContext's conf: runtime settings applied to a
            # borrowed session (see `_adopt`) must be applied again.
            self._apply_runtime_conf(child)
            session = child
        return SparkEngineContext(session, secrets=secrets)


def _csv_null_tokens(params: Mapping[str, Any]) -> list[str] | None:
    """pandas' null tokens for a CSV read, as on the pandas engine (Spark reads empty fields as
    null already); None when only those would be null."""
    from odibi_dagster.engines.formats.csv import csv_null_tokens

    return [t for t in csv_null_tokens(params) if t] or None


def _with_pandas_nulls(sdf: Any, tokens: list[str]) -> Any:
    """A CSV read as text, with pandas' null tokens made null and each column given the type
    pandas would infer (boolean, bigint, double, else string): one aggregate pass, as Spark's
    own inferSchema makes one."""
    from pyspark.sql import functions as F

    cleaned = sdf.select(
        [F.when(F.col(f"`{c}`").isin(tokens), None).otherwise(F.col(f"`{c}`")).alias(c) for c in sdf.columns]
    )
    tests = {
        "boolean": lambda c: F.lower(c).isin("true", "false"),
        "bigint": lambda c: c.rlike(r"^\s*[+-]?[0-9]{1,18}\s*$"),
        "double": lambda c: c.try_cast("double").isNotNull(),
    }
    aggs = [
        F.sum(F.when(F.col(f"`{c}`").isNotNull() & ~test(F.col(f"`{c}`")), 1).otherwise(0)).alias(f"{c}\x00{t}")
        for c in cleaned.columns
        for t, test in tests.items()
    ]
    if not aggs:
        return cleaned
    aggs += [F.count(F.col(f"`{c}`")).alias(f"{c}\x00count") for c in cleaned.columns]
    misses = cleaned.agg(*aggs).collect()[0].asDict()
    out = []
    for c in cleaned.columns:
        # An all-null column is float64 in pandas.
        kind = (
            "double" if not misses[f"{c}\x00count"] else next((t for t in tests if not misses[f"{c}\x00{t}"]), "string")
        )
        col = F.col(f"`{c}`")
        out.append(
            (F.lower(col) == "true" if kind == "boolean" else col.cast(kind)).alias(c)
            if kind != "string"
            else col.alias(c)
        )
    return cleaned.select(out)
