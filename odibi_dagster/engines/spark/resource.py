"""The Spark engine resource (:class:`SparkEngine`): one SparkSession per process.

Built on dagster-pyspark: the session is created by its ``LazyPySparkResource`` from the
conf computed here (master, app name, Delta extension and catalog, ``spark.jars.packages``
with a stable Ivy cache, see :mod:`~odibi_dagster.engines.spark.jars`), only when a step
first needs it. Each step gets a :class:`~odibi_dagster.engines.spark.context.SparkEngineContext`
on a child session of it.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field, PrivateAttr

from odibi_dagster.engines.secrets import SecretSource
from odibi_dagster.engines.spark import azure as spark_azure
from odibi_dagster.engines.spark.common import error_summary
from odibi_dagster.engines.spark.context import SparkEngineContext
from odibi_dagster.engines.spark.jars import PROVIDED_BY_SPARK, ivy_dir, merge_csv, resolve_packages

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkEngine"]

log = logging.getLogger(__name__)

_DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
_DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"

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
    azure: bool | None = Field(
        default=None,
        description="Azure storage paths (abfs/abfss/wasb/wasbs) through the hadoop-azure jars: "
        "true always, false never, unset when a step of a pipeline that uses Azure paths starts the session",
    )

    _session: Any = PrivateAttr(default=None)
    _owns_session: bool = PrivateAttr(default=False)
    _azure_session: bool = PrivateAttr(default=False)  # the session has the hadoop-azure jars

    # -- configuration -------------------------------------------------------------------

    def resolved_packages(self, azure: bool | None = None) -> list[str]:
        """The Maven coordinates for ``spark.jars.packages``: Delta, hadoop-azure, aliases expanded, user's."""
        return resolve_packages(self.packages, self.spark_conf, self.delta, self._wants_azure(azure))

    def _wants_azure(self, hint: bool | None) -> bool:
        """Whether the session gets hadoop-azure: the ``azure`` field, else the starting step's hint."""
        return bool(self.azure if self.azure is not None else hint)

    def session_conf(self, azure: bool | None = None) -> dict[str, str]:
        """The full Spark conf the session is started with (user's ``spark_conf`` wins).

        ``azure``: whether the step starting the session uses Azure paths (when the ``azure``
        field is unset). Credentials are never part of it: see :func:`spark_azure.configure`.
        """
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
            conf["spark.sql.extensions"] = merge_csv(user.get("spark.sql.extensions"), _DELTA_EXTENSION)
        with_azure = self._wants_azure(azure)
        if with_azure:
            conf.update(spark_azure.session_settings(self.master, user))
        packages = self.resolved_packages(azure)
        if packages:
            conf["spark.jars.packages"] = ",".join(packages)
            provided = (*PROVIDED_BY_SPARK, *(spark_azure.PROVIDED_BY_SPARK_AZURE if with_azure else ()))
            conf["spark.jars.excludes"] = merge_csv(provided, user.get("spark.jars.excludes"))
        return conf

    # -- session lifecycle ---------------------------------------------------------------

    @property
    def spark_session(self) -> SparkSession:
        """The process's SparkSession, started on first use."""
        return self._get_session()

    def _get_session(self, azure: bool | None = None) -> SparkSession:
        session = self._session
        if session is None or session.sparkContext._jsc is None:
            session = self._start_session(azure)
        return session

    @property
    def owns_session(self) -> bool:
        """Whether this resource started the session (and so stops it)."""
        return self._owns_session

    def _start_session(self, azure: bool | None = None) -> SparkSession:
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
                self._azure_session = self._wants_azure(azure)  # as far as we can tell
                self._adopt(session)
            else:
                conf = self.session_conf(azure)
                try:
                    session = LazyPySparkResource(spark_config=conf).spark_session
                except Exception as exc:
                    raise RuntimeError(
                        "could not start Spark "
                        f"(master {self.master}, packages {conf.get('spark.jars.packages', '-')}, "
                        f"ivy cache {conf['spark.jars.ivy']}): the first start downloads the jars "
                        "from Maven Central, later starts use the cache offline; "
                        f"{error_summary(exc)}"
                    ) from exc
                self._owns_session = True
                self._azure_session = self._wants_azure(azure)
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

    def context(self, secrets: SecretSource | None = None, *, azure: bool | None = None) -> SparkEngineContext:
        """A new SparkEngineContext (one per step execution) on its own child session.

        ``newSession()`` shares the SparkContext, jars and table cache but has its own temp
        views and SQL conf, so steps running at the same time in one process (in threads)
        cannot see or replace each other's ``bronze``/``silver`` views. Spark Connect
        sessions have no child sessions.

        ``azure``: the step uses Azure storage paths. When this call starts the session (and
        the ``azure`` field is unset) it gets the hadoop-azure jars; a session with them gets
        the environment's Azure credentials (see :mod:`~odibi_dagster.engines.spark.azure`).
        """
        session = self._get_session(azure)
        storage = spark_azure.configure(session) if self._azure_session or self._wants_azure(azure) else None
        try:
            child = session.newSession()
        except Exception:  # Spark Connect: keep the session as it is
            log.debug("newSession() not available; steps share the session's temp views")
        else:
            # A child starts from the SparkContext's conf: runtime settings applied to a
            # borrowed session (see `_adopt`) must be applied again.
            self._apply_runtime_conf(child)
            session = child
        ctx = SparkEngineContext(session, secrets=secrets)
        if storage is not None:
            ctx.secrets.redactor.add(*storage.secrets())  # Hadoop errors may quote a setting
        return ctx
