"""The jars a Spark session needs (Delta, Avro, JDBC drivers, hadoop-azure), resolved from Maven Central.

They go into ``spark.jars.packages``; Ivy keeps them in a stable cache
(``~/.cache/odibi_dagster/ivy`` or ``$ODIBI_SPARK_IVY``), so only the first session of a
machine needs the network. When the exact version of the installed ``delta-spark`` or
``pyspark`` is not published, the newest patch of the same minor line is used.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "DEFAULT_IVY_DIR",
    "MAVEN_CENTRAL",
    "PACKAGE_ALIASES",
    "PROVIDED_BY_SPARK",
    "SQLITE_JDBC",
    "avro_package",
    "delta_package",
    "ivy_dir",
    "merge_csv",
    "resolve_packages",
    "split_csv",
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
_AVRO_NAMES = {"avro", "spark-avro", f"org.apache.spark:spark-avro_{SCALA_BINARY}", "org.apache.spark:spark-avro"}

#: Transitive dependencies of the Delta jars (delta-kernel pulls hadoop, parquet, jackson,
#: log4j ...) that Spark already ships: excluding them keeps the download small (13 MB
#: instead of ~100 MB) and keeps a second, shadowed copy off the classpath.
PROVIDED_BY_SPARK = (
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


def split_csv(value: str | Iterable[str] | None) -> list[str]:
    """A comma-separated setting (or a list) as a list of its non-blank items."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else value
    return [text for text in (str(v).strip() for v in items) if text]


def merge_csv(*parts: str | Iterable[str] | None) -> str:
    """Join comma-separated lists, dropping blanks and duplicates, keeping order."""
    seen: dict[str, None] = {}
    for part in parts:
        for item in split_csv(part):
            seen.setdefault(item, None)
    return ",".join(seen)


def resolve_packages(
    packages: Iterable[str], spark_conf: Mapping[str, str], delta: bool, azure: bool = False
) -> list[str]:
    """The Maven coordinates for ``spark.jars.packages``: Delta, hadoop-azure (``azure``),
    ``packages`` with their aliases expanded, then the conf's own ``spark.jars.packages``."""
    ivy = Path(spark_conf.get("spark.jars.ivy") or ivy_dir()).expanduser()
    repos = (*split_csv(spark_conf.get("spark.jars.repositories")), MAVEN_CENTRAL)
    coords: list[str] = [delta_package(ivy, repos)] if delta else []
    if azure:
        from odibi_dagster.engines.spark.azure import hadoop_azure_package

        coords.append(hadoop_azure_package())
    for pkg in packages:
        name = pkg.strip()
        if name.lower() in _AVRO_NAMES:
            coords.append(avro_package(ivy, repos))
        elif name.lower() in PACKAGE_ALIASES:
            coords.append(PACKAGE_ALIASES[name.lower()])
        elif name.count(":") == 2:
            coords.append(name)
        else:
            raise ValueError(f"package {name!r} is not group:artifact:version nor a known alias")
    coords.extend(split_csv(spark_conf.get("spark.jars.packages")))
    return merge_csv(coords).split(",") if coords else []
