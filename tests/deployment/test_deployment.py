"""odibi_dagster in a production-like Dagster deployment, every part real and on 127.0.0.1:

* PostgreSQL (a throw-away cluster) holds the instance's runs, event log and schedules
  (``dagster-postgres``); the webserver and ``dagster-daemon`` run as their own processes;
* three code locations, each served by its own ``dagster api grpc`` server: a copy of the
  example odibi location (``definitions/``, plus ``locations/revenue_vs_target.yaml``, which
  reads another location's asset as an external input), a hand-written "existing team"
  location (``locations/team_location.py``) whose report depends on an odibi asset by key, and
  an odibi location whose runs use the Celery executor (``locations/distributed_location.py``);
* Redis as the Celery broker and two Celery workers, each started from its own folder with its
  own copy of that location and its own ``DAGSTER_HOME``, and Azurite as the blob store that
  holds the pipeline's ``base_dir``: datasets, tracker records and the story pass between the
  workers only through it;
* a standalone Spark cluster (a master and a worker): the Celery location's Spark steps run
  their drivers in the Celery worker that takes them and their executors on the cluster, with
  Delta datasets on the blob store through hadoop-azure.

Everything is driven through the webserver's GraphQL API, as the UI does. The servers start once
for the module; the tests run in order and later ones build on what earlier ones materialized.
When a test fails it prints the tail of every server's log. The example's file-watch sensor
ticks every 5 s here instead of 30 s (the copy's ``min_interval_seconds``) to keep the module
well under five minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import DagsterInstance
from deployment_support import (
    BIN,
    REPO,
    REPOSITORY,
    Deployment,
    redis_server,
    write_dagster_yaml,
)
from support import AZURITE_ACCOUNT_KEY, SparkCluster, azurite_server, free_port, postgres_server, wait_for

pytestmark = [pytest.mark.deployment, pytest.mark.slow]

LOCATIONS = Path(__file__).parent / "locations"
EXAMPLES, TEAM, DISTRIBUTED = "odibi_examples", "team", "odibi_distributed"
FILE_SENSOR = "daily_sales__watch_ingest_daily_sales"
WORKERS = ("worker_a", "worker_b")
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
MEDALLION_STEPS = ("ingest_sales", "save_bronze", "clean_sales", "save_silver", "summarise_daily", "publish_gold")
SPARK_STEPS = ("ingest_sales_spark", "revenue_by_store", "save_store_revenue")

LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on PythonError { message stack } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_STATUS = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
RUN_EVENTS = """query($id: ID!) { logsForRun(runId: $id, limit: 5000) { __typename ... on EventConnection {
  events { __typename ... on MessageEvent { message stepKey }
    ... on ExecutionStepFailureEvent { error { message } } ... on RunFailureEvent { message }
    ... on EngineEvent { metadataEntries { label ... on TextMetadataEntry { text } } } } } } }"""
BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) { __typename
  ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status error { message } runs { runId status tags { key value } } } } }"""
GROUP = """query($g: AssetGroupSelector!) { assetNodes(group: $g) { assetKey { path } isMaterializable } }"""
NODES = """query($keys: [AssetKeyInput!]) { assetNodes(assetKeys: $keys) { assetKey { path }
  repository { location { name } } dependencyKeys { path } dependedByKeys { path } } }"""
SENSOR_RUNS = """query($f: RunsFilter) { runsOrError(filter: $f) { ... on Runs {
  results { runId status tags { key value } } } } }"""
SENSOR_TICKS = """query($s: SensorSelector!) { sensorOrError(sensorSelector: $s) { __typename ... on Sensor {
  sensorState { status ticks(limit: 20) { status timestamp runIds error { message } } } } } }"""


# ---------------------------------------------------------------------------------------- setup


def _copy_examples(root: Path) -> Path:
    """The example location (``definitions/``) with the external-input pipeline beside its own."""
    dest = root / "odibi" / "definitions"
    shutil.copytree(REPO / "definitions", dest, ignore=shutil.ignore_patterns(".odibi", "output", "__pycache__"))
    shutil.copy(LOCATIONS / "revenue_vs_target.yaml", dest / "pipelines")
    daily = dest / "pipelines" / "daily_sales.yaml"
    text = daily.read_text()
    assert "min_interval_seconds: 30" in text
    daily.write_text(text.replace("min_interval_seconds: 30", "min_interval_seconds: 5"))
    return dest


def _distributed_copy(folder: Path) -> Path:
    """One copy of the Celery location as the package ``odibi_distributed`` under ``folder/code``:
    the example medallion with its paths relative to ``base_dir`` (on the blob store)."""
    package = folder / "code" / "odibi_distributed"
    (package / "pipelines").mkdir(parents=True)
    shutil.copy(LOCATIONS / "distributed_location.py", package / "__init__.py")
    shutil.copy(REPO / "definitions" / "pipelines" / "medallion_functions.py", package / "pipelines")
    shutil.copy(LOCATIONS / "spark_sales.yaml", package / "pipelines")
    medallion = (REPO / "definitions" / "pipelines" / "sales_medallion.yaml").read_text()
    medallion = medallion.replace("../data/", "data/").replace("../output/", "output/")
    (package / "pipelines" / "sales_medallion.yaml").write_text(medallion)
    return folder / "code"


def _workspace(dep: Deployment) -> Path:
    path = dep.root / "workspace.yaml"
    entries = "".join(
        f"  - grpc_server: {{host: 127.0.0.1, port: {dep.ports[name]}, location_name: {name}}}\n"
        for name in (EXAMPLES, TEAM, DISTRIBUTED)
    )
    path.write_text("load_from:\n" + entries)
    return path


def _start(dep: Deployment, blob: str, container: str, broker: str) -> None:
    root = dep.root
    examples = _copy_examples(root)
    dep.facts["examples"] = examples
    (root / "team").mkdir()
    shutil.copy(LOCATIONS / "team_location.py", root / "team")
    remote = {
        "AZURE_STORAGE_CONNECTION_STRING": blob,
        "ODIBI_BASE_DIR": f"abfs://{container}/base",
        "ODIBI_CELERY_BROKER": f"{broker}/0",
        "ODIBI_CELERY_BACKEND": f"{broker}/1",
        "ODIBI_SPARK_MASTER": dep.facts["spark"].url,
        "ODIBI_SPARK_EVENTS": str(root / "distributed" / "server" / "spark-events"),
    }
    dep.code_server(EXAMPLES, ["-f", "definitions/definitions.py", "-d", "definitions"], examples.parent)
    dep.code_server(
        TEAM,
        ["-f", "team_location.py", "-d", "."],
        root / "team",
        {"TEAM_SHARED_DIR": str(root / "team_shared"), "ODIBI_WORK_DIR": str(examples / "pipelines" / ".odibi")},
    )
    # The Celery location is a package on the server's Python path, not a file in its working
    # directory: runs then tell the workers to import it from their own copies.
    server_code = _distributed_copy(root / "distributed" / "server")
    (root / "distributed" / "server" / "run").mkdir()
    dep.code_server(
        DISTRIBUTED,
        ["-m", "odibi_distributed", "--empty-working-directory"],
        root / "distributed" / "server" / "run",
        {**remote, "PYTHONPATH": f"{server_code}{os.pathsep}{REPO}"},
    )
    _start_workers(dep, broker, remote)
    for location in (EXAMPLES, TEAM, DISTRIBUTED):
        dep.wait_code_server(location)
    workspace = _workspace(dep)
    dep.ports["webserver"] = port = free_port()
    web = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(workspace)]
    dep.add("webserver", web, root)
    # A code server restarting while a backfill is in flight makes the location unloadable for a
    # moment; without this Dagster fails the backfill for good (README: Deploying).
    daemon_env = {"DAGSTER_BACKFILL_RETRY_DEFINITION_CHANGED_ERROR": "1"}
    dep.add("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)], root, daemon_env)
    wait_for(dep.workspace_loaded, 120, "the webserver to load the workspace")
    for worker in WORKERS:
        wait_for(lambda w=worker: " ready." in dep.servers[w].tail(200), 120, f"Celery {worker} to be ready")


def _start_workers(dep: Deployment, broker: str, remote: dict[str, str]) -> None:
    """Two Celery workers, each in its own folder with its own copy of the location and its own
    ``DAGSTER_HOME`` (the same storage settings), one task at a time each."""
    for worker in WORKERS:
        folder = dep.root / "distributed" / worker
        code = _distributed_copy(folder)
        home = write_dagster_yaml(folder / "home", dep.facts["pg"]).parent
        events = folder / "spark-events"  # where this worker's Spark drivers log their events
        events.mkdir()
        config = folder / "celery.yaml"
        # Acknowledged when done: a worker busy with a long (Spark) step holds no next step back.
        config.write_text(
            f"execution:\n  config:\n    broker: {broker}/0\n    backend: {broker}/1\n"
            "    config_source: {task_acks_late: true}\n"
        )
        dep.add(
            worker,
            [
                *(str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config)),
                *("-n", worker, "-i", "odibi_distributed", "--", "-c", "1"),
            ],
            folder,
            {
                **remote,
                "DAGSTER_HOME": str(home),
                "PYTHONPATH": f"{code}{os.pathsep}{REPO}",
                "ODIBI_SPARK_EVENTS": str(events),
            },
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The whole deployment, started once for the module and stopped (each server's process
    group) at its end."""
    root = tmp_path_factory.mktemp("deployment")
    password = secrets.token_hex(12)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_server(root / "pg", password))
        blob = stack.enter_context(azurite_server())
        broker = stack.enter_context(redis_server(root / "logs" / "redis.log"))
        # The Spark cluster comes up while the other servers start (about 20 s on its own).
        spark = SparkCluster(root / "spark", memory="1g", env={"PYTHONPATH": str(REPO)}).start()
        stack.callback(spark.stop)
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("AZURE_STORAGE_CONNECTION_STRING", blob)  # this process reads the blob store too
        env = {k: v for k, v in os.environ.items() if k not in ("ODIBI_BASE_DIR", "DAGSTER_HOME", "PYTHONPATH")}
        env |= {
            "DAGSTER_HOME": str(root / "home"),
            "DAGSTER_PG_PASSWORD": password,
            "PYTHONPATH": str(REPO),
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        }
        dep = Deployment(root, env, facts={"pg": pg, "container": f"c{uuid.uuid4().hex[:12]}", "spark": spark})
        stack.callback(dep.stop_all)
        write_dagster_yaml(dep.home, pg)
        # The storage schema once, before any server starts (what `dagster instance migrate` does):
        # servers starting on an empty database at the same moment would race to create it.
        patch.setenv("DAGSTER_PG_PASSWORD", password)
        with DagsterInstance.from_config(str(dep.home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        _prepare_blob_store(dep.facts["container"])
        try:
            _start(dep, blob, dep.facts["container"], broker)
            dep.facts["startup_s"] = round(time.monotonic() - started, 1)
            print(f"deployment started in {dep.facts['startup_s']} s")
            _kick_off(dep)
        except BaseException:
            print(dep.log_tails(60))
            raise
        yield dep


def _prepare_blob_store(container: str) -> None:
    from odibi_dagster.engines import paths

    fs = paths.fs_for(f"abfs://{container}")
    fs.mkdir(container)
    fs.put(str(REPO / "definitions" / "data" / "raw" / "sales.csv"), f"abfs://{container}/base/data/raw/sales.csv")


def _kick_off(dep: Deployment) -> None:
    """Launch the runs that do not depend on each other at once, as several users would; each
    test then waits for its own. (One after the other, the module took a minute longer.)"""
    dep.facts["targets_run"] = _materialize(dep, TEAM, ["team", "store_targets"])
    dep.facts["medallion_run"] = _launch(dep, EXAMPLES, "sales_medallion")
    dep.facts["backfill"] = _launch_backfill(dep, DAYS)
    dep.facts["celery_run"] = _launch(dep, DISTRIBUTED, "sales_medallion")


@pytest.fixture(autouse=True)
def _log_tails_on_failure(request: pytest.FixtureRequest, deployment: Deployment) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(deployment.log_tails(60))


# ---------------------------------------------------------------------------------------- helpers


def _selector(location: str, **extra: Any) -> dict[str, Any]:
    return {"repositoryLocationName": location, "repositoryName": REPOSITORY, **extra}


def _launch(dep: Deployment, location: str, job: str = "__ASSET_JOB", **params: Any) -> str:
    selector = _selector(location, jobName=job, **params.pop("selector", {}))
    result = dep.query(LAUNCH, {"p": {"selector": selector, "runConfigData": {}, **params}})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def _try_launch(dep: Deployment, location: str, job: str) -> str | None:
    """Launch ``job``; ``None`` while the webserver cannot reach the code server."""
    result = dep.query(LAUNCH, {"p": {"selector": _selector(location, jobName=job), "runConfigData": {}}})["launchRun"]
    if result["__typename"] == "PythonError" and "UserCodeUnreachable" in json.dumps(result):
        return None
    assert result["__typename"] == "LaunchRunSuccess", result
    return str(result["run"]["runId"])


def _materialize(dep: Deployment, location: str, *keys: list[str]) -> str:
    return _launch(dep, location, selector={"assetSelection": [{"path": k} for k in keys]})


def _run_problems(dep: Deployment, run_id: str) -> str:
    events = dep.query(RUN_EVENTS, {"id": run_id})["logsForRun"].get("events", [])
    failed = [e for e in events if e["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")]
    return json.dumps(failed, indent=1)[:4000]


def _wait_runs(dep: Deployment, *run_ids: str, timeout: float = 150) -> None:
    """Wait until every run finished; fail naming the failed steps' errors unless all succeeded."""
    statuses: dict[str, str] = {}

    def finished() -> bool:
        for run_id in run_ids:
            statuses[run_id] = dep.query(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        return all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses.values())

    wait_for(finished, timeout, f"runs {run_ids}", interval=1)
    for run_id, status in statuses.items():
        assert status == "SUCCESS", f"run {run_id}: {status}\n{_run_problems(dep, run_id)}"


def _launch_backfill(dep: Deployment, days: list[str]) -> str:
    """A backfill of ``days`` over every step asset of ``daily_sales``, as the UI's Materialize
    dialog launches it (not its observable source asset: the dialog materializes, it does not
    observe). The same days of every asset: with ``partitionNames`` Dagster would also ask for
    the trailing window's later days (up to six after the last), which read days it does not make."""
    group = dep.query(GROUP, {"g": {"groupName": "daily_sales", **_selector(EXAMPLES)}})["assetNodes"]
    by_asset = [
        {"assetKey": {"path": n["assetKey"]["path"]}, "partitions": {"range": {"start": days[0], "end": days[-1]}}}
        for n in group
        if n["isMaterializable"]
    ]
    result = dep.query(BACKFILL, {"p": {"partitionsByAssets": by_asset, "fromFailure": False}})
    assert result["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", result
    return str(result["launchPartitionBackfill"]["backfillId"])


def _backfill(dep: Deployment) -> dict[str, Any]:
    return dep.query(BACKFILL_STATUS, {"id": dep.facts["backfill"]})["partitionBackfillOrError"]


def _wait_backfill_runs(dep: Deployment) -> dict[str, Any]:
    """Wait until the backfill's runs succeeded. (The daemon marks the backfill itself completed
    at its next pass, up to 30 s later: ``test_the_backfill_is_marked_completed`` checks that.)"""
    backfill = wait_for(lambda: (b := _backfill(dep))["runs"] and b, 120, "the backfill's run", interval=1)
    _wait_runs(dep, *(run["runId"] for run in backfill["runs"]))
    backfill = _backfill(dep)
    assert backfill["status"] in ("REQUESTED", "COMPLETED", "COMPLETED_SUCCESS"), backfill
    return backfill


def _sensor_runs(dep: Deployment) -> list[dict[str, Any]]:
    f = {"tags": [{"key": "dagster/sensor_name", "value": FILE_SENSOR}]}
    return dep.query(SENSOR_RUNS, {"f": f})["runsOrError"]["results"]


def _drop_file(dep: Deployment, name: str, frame: pd.DataFrame) -> Path:
    """Land a file in the watched folder the way an upload does: written beside it, moved in."""
    incoming = dep.facts["examples"] / "data" / "incoming"
    tmp = incoming.parent / f".{name}.part"
    frame.to_csv(tmp, index=False)
    # Uploaded a while ago and moved in now (``mv`` keeps the mtime): older than the sensor's
    # settle_seconds, so its first tick takes it without waiting for a second one.
    old = time.time() - 120
    os.utime(tmp, (old, old))
    tmp.replace(incoming / name)
    return incoming / name


def _wait_sensor_run(dep: Deployment, file_name: str, seen: set[str]) -> dict[str, Any]:
    def new_run() -> dict[str, Any] | None:
        for run in _sensor_runs(dep):
            tags = {t["key"]: t["value"] for t in run["tags"]}
            if run["runId"] not in seen and tags.get("odibi/file") == file_name:
                return run | {"tags": tags}
        return None

    run = wait_for(new_run, 90, f"the file-watch sensor's run for {file_name}")
    _wait_runs(dep, run["runId"])
    return run


def _celery_workers(dep: Deployment, run_id: str, pipeline: str, steps: tuple[str, ...]) -> dict[str, str]:
    """The Celery worker each step of the run executed on (from the run's engine events); every
    step succeeded on one of the deployment's workers."""
    events = dep.query(RUN_EVENTS, {"id": run_id})["logsForRun"]["events"]
    worker_of: dict[str, str] = {}
    for event in events:
        entries = {m["label"]: m.get("text") for m in event.get("metadataEntries") or []}
        if "Celery worker" in entries:
            worker_of[event["stepKey"]] = str(entries["Celery worker"]).split("@", 1)[0]
    assert set(worker_of) == {f"{pipeline}__{s}" for s in steps}, worker_of
    assert set(worker_of.values()) <= set(WORKERS), worker_of
    succeeded = {e["stepKey"] for e in events if e["__typename"] == "ExecutionStepSuccessEvent"}
    assert succeeded == set(worker_of)
    return worker_of


def _daily_revenue(frame: pd.DataFrame) -> dict[str, float]:
    return {k: round(v, 2) for k, v in frame.groupby("store")["amount"].sum().items()}


# ---------------------------------------------------------------------------------------- tests


def test_odibi_and_team_locations_materialize_each_others_assets(deployment: Deployment) -> None:
    """The team's asset feeds an odibi pipeline (an external input); an odibi asset feeds the
    team's report (a dependency by key); the asset graph links them across locations."""
    dep = deployment
    _wait_runs(dep, dep.facts["targets_run"], dep.facts["medallion_run"])
    _wait_runs(dep, _launch(dep, EXAMPLES, "revenue_vs_target"), _materialize(dep, TEAM, ["team", "revenue_report"]))

    out = pd.read_csv(dep.facts["examples"] / "output" / "revenue_vs_target.csv")
    sales = pd.read_csv(REPO / "definitions" / "data" / "raw" / "sales.csv")
    expected = sales.groupby("store")["amount"].sum().round(2)
    assert out["store"].tolist() == ["east", "north", "south", "west"]
    assert out.set_index("store")["revenue"].to_dict() == pytest.approx(expected.to_dict())
    assert out.set_index("store")["target"].to_dict() == {"east": 30000, "north": 50000, "south": 40000, "west": 20000}

    keys = [["team", "store_targets"], ["revenue_vs_target", "revenue_vs_target"], ["team", "revenue_report"]]
    nodes = {
        tuple(n["assetKey"]["path"]): n for n in dep.query(NODES, {"keys": [{"path": k} for k in keys]})["assetNodes"]
    }
    assert nodes[("team", "store_targets")]["repository"]["location"]["name"] == TEAM
    assert nodes[("revenue_vs_target", "revenue_vs_target")]["repository"]["location"]["name"] == EXAMPLES
    odibi_deps = [d["path"] for d in nodes[("revenue_vs_target", "revenue_vs_target")]["dependencyKeys"]]
    assert ["team", "store_targets"] in odibi_deps
    assert ["revenue_vs_target", "revenue_vs_target"] in [
        d["path"] for d in nodes[("team", "store_targets")]["dependedByKeys"]
    ]
    assert [d["path"] for d in nodes[("team", "revenue_report")]["dependencyKeys"]] == [
        ["sales_medallion", "gold_daily_sales"]
    ]
    (gold,) = dep.query(NODES, {"keys": [{"path": ["sales_medallion", "gold_daily_sales"]}]})["assetNodes"]
    assert gold["repository"]["location"]["name"] == EXAMPLES
    assert ["team", "revenue_report"] in [d["path"] for d in gold["dependedByKeys"]]


def test_a_backfill_over_three_days_of_the_daily_example(deployment: Deployment) -> None:
    dep = deployment
    backfill = _wait_backfill_runs(dep)
    (run,) = backfill["runs"]  # backfill: {policy: single_run}
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == (
        "2024-01-01",
        "2024-01-03",
    )
    for day in DAYS:
        stored = pd.read_csv(dep.facts["examples"] / "output" / "daily_sales" / f"{day}.csv")
        source = pd.read_csv(REPO / "definitions" / "data" / "daily" / day / "sales.csv")
        assert stored.set_index("store")["revenue"].to_dict() == pytest.approx(_daily_revenue(source))


def test_a_dropped_file_starts_the_file_watch_sensors_run(deployment: Deployment) -> None:
    dep = deployment
    _wait_backfill_runs(dep)  # the correction replaces what the backfill made of that day
    seen = {r["runId"] for r in _sensor_runs(dep)}
    corrected = pd.read_csv(REPO / "definitions" / "data" / "corrections" / "sales_2024-01-03.csv")
    _drop_file(dep, "sales_2024-01-03.csv", corrected)
    run = _wait_sensor_run(dep, "sales_2024-01-03.csv", seen)
    assert run["tags"]["dagster/partition"] == "2024-01-03"
    stored = pd.read_csv(dep.facts["examples"] / "output" / "daily_sales" / "2024-01-03.csv")
    assert stored.set_index("store")["revenue"].to_dict() == pytest.approx(_daily_revenue(corrected))


def test_metadata_checks_and_the_story_link_are_in_postgres(deployment: Deployment) -> None:
    import psycopg
    from dagster import EventLogEntry
    from dagster._serdes import deserialize_value

    dep = deployment
    run_id = dep.facts["medallion_run"]
    _wait_runs(dep, run_id)
    with psycopg.connect(dep.facts["pg"]["url"]) as conn:
        (runs,) = conn.execute("SELECT count(*) FROM runs").fetchone()
        assert runs >= 6
        rows = conn.execute(
            "SELECT asset_key, event FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
            (run_id, "ASSET_MATERIALIZATION"),
        ).fetchall()
        mats = {
            tuple(json.loads(key)): deserialize_value(event, EventLogEntry).asset_materialization.metadata
            for key, event in rows
        }
        checks = [
            deserialize_value(event, EventLogEntry).dagster_event.event_specific_data
            for (event,) in conn.execute(
                "SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                (run_id, "ASSET_CHECK_EVALUATION"),
            ).fetchall()
        ]
        executions = conn.execute(
            "SELECT check_name, execution_status FROM asset_check_executions WHERE run_id = %s", (run_id,)
        ).fetchall()
    assert len(mats) == 6
    silver = mats[("sales_medallion", "silver_sales")]
    assert silver["dagster/row_count"].value > 0
    assert [c.name for c in silver["dagster/column_schema"].value.columns] == [
        "sale_id",
        "store",
        "amount",
        "quantity",
        "sale_date",
    ]
    assert silver["dagster/column_lineage"].value.deps_by_column["amount"]
    assert {"odibi/sample", "odibi/duration_ms", "dagster/uri"} <= set(silver)
    stories = {str(md["odibi/story"].value) for md in mats.values()}
    assert len(stories) == 1  # every step links the run's one story
    story = Path(stories.pop())
    assert story.parts[-2] == run_id and story.is_file()
    assert all(step in story.read_text() for step in MEDALLION_STEPS)
    assert sorted(c.check_name for c in checks) == ["accepted_values__store", "not_null__sale_id_amount",
                                                    "row_count", "unique__sale_id"]  # fmt: skip
    assert all(c.passed for c in checks)
    assert sorted(executions) == sorted((c.check_name, "SUCCEEDED") for c in checks)


def test_after_a_code_server_restart_the_next_sensor_tick_and_run_work(deployment: Deployment) -> None:
    dep = deployment
    seen = {r["runId"] for r in _sensor_runs(dep)}
    restarted = time.time()
    dep.restart(EXAMPLES)
    dep.wait_code_server(EXAMPLES)
    day = pd.read_csv(REPO / "definitions" / "data" / "daily" / "2024-01-02" / "sales.csv").head(5)
    _drop_file(dep, "sales_2024-01-02.csv", day)
    run = _wait_sensor_run(dep, "sales_2024-01-02.csv", seen)
    assert run["tags"]["dagster/partition"] == "2024-01-02"
    stored = pd.read_csv(dep.facts["examples"] / "output" / "daily_sales" / "2024-01-02.csv")
    assert stored.set_index("store")["revenue"].to_dict() == pytest.approx(_daily_revenue(day))
    ticks = dep.query(SENSOR_TICKS, {"s": {**_selector(EXAMPLES), "sensorName": FILE_SENSOR}})["sensorOrError"][
        "sensorState"
    ]["ticks"]
    after = [t for t in ticks if t["timestamp"] >= restarted]
    assert any(t["status"] == "SUCCESS" and run["runId"] in t["runIds"] for t in after), after
    # A run launched from the UI goes through the new server too, with no reload: the webserver's
    # gRPC channel reconnects by itself (after a backoff, so a launch right at the restart fails).
    _wait_runs(dep, wait_for(lambda: _try_launch(dep, EXAMPLES, "simple_pipeline"), 60, "a launch after the restart"))


def test_a_celery_run_spreads_the_medallion_over_two_workers_that_share_no_disk(deployment: Deployment) -> None:
    from odibi_dagster.engines import paths

    dep = deployment
    run_id = dep.facts["celery_run"]
    _wait_runs(dep, run_id, timeout=180)
    _launch_spark_run(dep)  # now: a worker busy with a Spark step takes no medallion step
    worker_of = _celery_workers(dep, run_id, "sales_medallion", MEDALLION_STEPS)
    assert set(worker_of.values()) == set(WORKERS), worker_of

    base = f"abfs://{dep.facts['container']}/base"
    fs = paths.fs_for(base)
    with fs.open(f"{base}/output/medallion/gold_daily_sales.csv") as fh:
        gold = pd.read_csv(fh)
    local = pd.read_csv(dep.facts["examples"] / "output" / "medallion" / "gold_daily_sales.csv")
    pd.testing.assert_frame_equal(gold, local)  # the same pipeline, run in one process
    assert fs.exists(f"{base}/datasets/distributed/sales_medallion/silver_sales/data.parquet")
    _assert_story_on_blob_storage(dep, "sales_medallion", run_id, MEDALLION_STEPS)
    print(f"steps by worker: {worker_of}")


def _launch_spark_run(dep: Deployment) -> str:
    """The Spark pipeline's run on the Celery location, launched once (when the cluster is up)."""
    if "spark_run" not in dep.facts:
        dep.facts["spark"].wait_ready()
        dep.facts["spark_run"] = _launch(dep, DISTRIBUTED, "spark_sales")
    return str(dep.facts["spark_run"])


def _assert_story_on_blob_storage(dep: Deployment, pipeline: str, run_id: str, steps: tuple[str, ...]) -> None:
    """The run's tracker and story on the blob store cover every step, whichever worker ran it,
    and nothing was kept on the workers' or the server's disks."""
    from odibi_dagster.engines import paths

    run_dir = f"abfs://{dep.facts['container']}/base/stories/{pipeline}/{run_id}"
    fs = paths.fs_for(run_dir)
    lineage = json.loads(fs.cat(f"{run_dir}/tracker.json"))
    assert sorted(s["step_name"] for s in lineage["steps"]) == sorted(steps)
    assert lineage["summary"]["success_count"] == len(steps) and lineage["summary"]["running_count"] == 0
    story = fs.cat(f"{run_dir}/story.html").decode()
    assert all(f"{step}" in story for step in steps)
    for folder in ("server", *WORKERS):
        assert not list((dep.root / "distributed" / folder).rglob(".odibi")), folder


def test_spark_steps_run_on_celery_workers_and_the_spark_cluster_with_delta_on_blob_storage(
    deployment: Deployment,
) -> None:
    from odibi_dagster.engines import paths

    dep = deployment
    run_id, spark = _launch_spark_run(dep), dep.facts["spark"]
    _wait_runs(dep, run_id, timeout=480)
    worker_of = _celery_workers(dep, run_id, "spark_sales", SPARK_STEPS)

    base = f"abfs://{dep.facts['container']}/base"
    fs = paths.fs_for(base)
    with fs.open(f"{base}/output/spark/store_revenue.csv") as fh:
        stored = pd.read_csv(fh).set_index("store")
    sales = pd.read_csv(REPO / "definitions" / "data" / "raw" / "sales.csv")
    sales = sales[sales["amount"] > 0]
    assert stored["revenue"].to_dict() == pytest.approx(_daily_revenue(sales))
    assert stored["sales"].to_dict() == sales.groupby("store").size().to_dict()
    # The Spark steps' datasets are Delta tables on the blob store, read by the pandas store step.
    for dataset in ("sales_spark", "store_revenue"):
        log = f"{base}/datasets/distributed/spark_sales/{dataset}/data.delta/_delta_log"
        assert fs.exists(f"{log}/00000000000000000000.json"), dataset
    # Each Spark step was an application of the standalone cluster, its tasks run by the
    # cluster's executors (their output is under the Spark worker's folder).
    apps = {a["id"]: a for a in spark.status()["completedapps"] if a["name"] == "odibi-distributed"}
    assert len(apps) == 2 and all(a["state"] == "FINISHED" for a in apps.values()), apps
    assert {p.parent.parent.name for p in (spark.root / "work").glob("app-*/*/stderr")} == set(apps)
    # Each application's driver ran in the Celery worker that ran its step: its event log is in
    # that worker's own folder ($ODIBI_SPARK_EVENTS), one per Spark step the worker ran.
    spark_steps = [worker_of[f"spark_sales__{s}"] for s in SPARK_STEPS[:2]]
    for worker in WORKERS:
        logs = {p.name.removeprefix("eventlog_v2_") for p in (dep.root / "distributed" / worker).glob("spark-events/*")}
        assert logs <= set(apps) and len(logs) == spark_steps.count(worker), (worker, logs, worker_of)
    _assert_story_on_blob_storage(dep, "spark_sales", run_id, SPARK_STEPS)
    _assert_account_key_recorded_nowhere(dep, run_id)
    print(f"spark steps by worker: {worker_of}")


def _assert_account_key_recorded_nowhere(dep: Deployment, run_id: str) -> None:
    """The account key (in every process's connection string) is in no log the deployment wrote:
    the servers' and Celery workers' (with the Spark drivers' output), the Spark cluster's and
    its executors', the drivers' event logs (which list the Hadoop configuration), Dagster's
    event log in Postgres, the story and the tracker files."""
    import psycopg

    files = [p for p in dep.root.rglob("*") if p.is_file() and p.suffix in (".log", "") and "pg" not in p.parts]
    files += list(dep.facts["spark"].root.rglob("*"))
    texts = {str(p): p.read_text(errors="replace") for p in files if p.is_file()}
    assert [n for n in texts if "spark-events" in n], "no Spark event log"
    assert not [n for n, t in texts.items() if AZURITE_ACCOUNT_KEY in t]
    with psycopg.connect(dep.facts["pg"]["url"]) as conn:
        rows = conn.execute("SELECT event FROM event_logs WHERE run_id = %s", (run_id,)).fetchall()
    assert rows and not [e for (e,) in rows if AZURITE_ACCOUNT_KEY in e]
    from odibi_dagster.engines import paths

    run_dir = f"abfs://{dep.facts['container']}/base/stories/spark_sales/{run_id}"
    fs = paths.fs_for(run_dir)
    run_files = fs.find(run_dir)
    assert run_files and not [p for p in run_files if AZURITE_ACCOUNT_KEY in fs.cat(p).decode(errors="replace")]


def test_the_backfill_is_marked_completed(deployment: Deployment) -> None:
    backfill = wait_for(
        lambda: (b := _backfill(deployment))["status"] not in ("REQUESTED", "CANCELING", "FAILING") and b,
        90,
        "the daemon to mark the backfill completed",
        interval=1,
    )
    assert backfill["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), backfill
    assert [run["status"] for run in backfill["runs"]] == ["SUCCESS"]
