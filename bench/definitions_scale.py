"""Definitions at scale: odibi_dagster vs the same steps as hand-written ``@dg.asset`` code.

    python bench/definitions_scale.py --steps 1000,5000 --repeat 3

For each size, a realistic project is generated under bench/data/defs_scale_<steps>/: pipelines
of 10-20 steps (two CSV ingests, a join, a chain of SQL transforms, two Parquet stores), one
YAML (``--format json``: JSON) pipeline document each, and ``spec.json`` with the same steps for the hand-written side.
The hand-written module (``handwritten.py``) builds one ``@dg.asset`` per step in a loop with the
same keys, groups, deps, descriptions (text + SQL), kinds, tags, metadata (incl. a code
reference), code versions and one shared IO manager, and one job per pipeline; the odibi module
(``odibi_defs.py``) is ``build_definitions("pipelines/")``.

Per repeat, each in a fresh process: odibi with an empty SQL-check cache (``ODIBI_CACHE_DIR``, the
first load of a project on a machine; "cold cache" rows), odibi again with the cache that load
left (every later load: code-server restarts, each run's worker), and the hand-written side.
Every pipeline's SQL differs from the others' (its thresholds), so a cold load parses it all.

* **load**: import + definitions (module import: ``build_definitions`` resp. the loop) +
  ``defs.get_repository_def()`` + ``load_all_definitions()`` + ``get_all_jobs()``; RSS after
  load and the peak (VmHWM).
* **location**: a real ``dagster api grpc -f <module>`` server on 127.0.0.1 (own process
  group, stopped as a group), timed from spawn until a ``GrpcServerCodeLocation`` has been
  created against it, which is what the webserver and daemon do for a code location: list
  repositories, fetch the external repository snapshot and every job snapshot. The server's
  RSS after that, its peak, and the snapshot's size.

Prints each repeat, then per size the medians of both sides and the median of the paired
ratios. Targets (issue 15): time <= 1.15x, RSS <= 1.2x.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _harness import free_port, paired, print_table, proc_status, process_group, run_child  # noqa: E402

DATA = HERE / "data"
TIME_TARGET, RSS_TARGET = 1.15, 1.2

# -- the generated project ------------------------------------------------------------------------

COLUMNS = "order_id, customer_id, region, amount"


def _pipeline(index: int, size: int) -> dict[str, Any]:
    """One pipeline document of ``size`` steps (>= 6): ingest x2 -> join -> SQL chain -> store x2."""
    name = f"sales_{index:04d}"
    steps: list[dict[str, Any]] = [
        {
            "layer": "ingest",
            "name": "ingest_orders",
            "value": f"../input/{name}/orders.csv",
            "outputs": {"data": "raw_orders"},
            "metadata": {"description": f"Order export of region feed {index}, one row per order."},
        },
        {
            "layer": "ingest",
            "name": "ingest_customers",
            "value": f"../input/{name}/customers.csv",
            "outputs": {"data": "raw_customers"},
            "metadata": {"description": "Customer master data."},
        },
        {
            "layer": "transform",
            "name": "join_orders",
            "type": "sql",
            "value": "SELECT o.order_id, o.customer_id, c.region, CAST(o.amount AS DOUBLE) AS amount\n"
            f"FROM orders o JOIN customers c ON o.customer_id = c.customer_id\nWHERE o.amount > -{index}",
            "inputs": {"orders": "raw_orders", "customers": "raw_customers"},
            "outputs": {"data": "t00"},
            "metadata": {"description": "Orders with the customer's region."},
        },
    ]
    transforms = size - 4
    for i in range(1, transforms):
        prev = f"t{i - 1:02d}"
        if i % 4 == 0 and i >= 2:  # now and then a self-join of two earlier results
            other = f"t{i - 2:02d}"
            sql = (
                f"SELECT a.order_id, a.customer_id, a.region, a.amount + b.amount AS amount\n"
                f"FROM cur a JOIN earlier b ON a.order_id = b.order_id WHERE a.amount > {index * 100 + i}"
            )
            inputs = {"cur": prev, "earlier": other}
        else:
            scaled = COLUMNS.replace("amount", f"amount * {1 + i / 100:.2f} AS amount")
            sql = f"SELECT {scaled}\nFROM src WHERE amount > {index * 100 + i}"  # no two pipelines alike
            inputs = {"src": prev}
        steps.append(
            {
                "layer": "transform",
                "name": f"refine_{i:02d}",
                "type": "sql",
                "value": sql,
                "inputs": inputs,
                "outputs": {"data": f"t{i:02d}"},
                "metadata": {"description": f"Refinement pass {i} of the order amounts."},
            }
        )
    last, mid = f"t{transforms - 1:02d}", f"t{(transforms - 1) // 2:02d}"
    for step_name, dataset in (("store_final", last), ("store_mid", mid)):
        steps.append(
            {
                "layer": "store",
                "name": step_name,
                "value": f"../output/{name}/{dataset}.parquet",
                "inputs": {"data": dataset},
            }
        )
    return {
        "pipeline": name,
        "description": f"Sales feed {index}: orders joined to customers and refined.",
        "owners": ["team:data-eng"],
        "tags": {"domain": "sales", "tier": "silver"},
        "steps": steps,
    }


def pipeline_sizes(total: int, seed: int = 15) -> list[int]:
    """Sizes of 10-20 steps summing to ``total`` (the last one takes the rest, at least 6)."""
    rng, sizes = random.Random(seed), []
    while total - sum(sizes) >= 26:
        sizes.append(rng.randint(10, 20))
    rest = total - sum(sizes)
    if rest > 20:
        sizes.append(rest // 2)
        rest -= rest // 2
    sizes.append(rest)
    return sizes


def _hand_spec(doc: dict[str, Any], source: Path) -> list[dict[str, Any]]:
    """The hand-written side's asset attributes: the same content odibi's translator derives."""
    name, out = doc["pipeline"], []
    for line, step in enumerate(doc["steps"], start=1):
        sink = step["layer"] == "store"
        key = step["name"] if sink else next(iter(step["outputs"].values()))
        parts = [step.get("metadata", {}).get("description", "")]
        if step.get("type") == "sql":
            parts.append(f"```sql\n{step['value']}\n```")
        else:
            parts.append(f"{'Writes' if sink else 'Reads'} `{step['value']}`")
        kind = "parquet" if sink or step["layer"] == "transform" else "csv"
        out.append(
            {
                "name": f"{name}__{step['name']}",
                "key": [name, key],
                "deps": [[name, d] for d in step.get("inputs", {}).values()],
                "group": name,
                "description": "\n\n".join(p for p in parts if p),
                "kinds": ["duckdb", kind],
                "tags": {**doc["tags"], "layer": step["layer"]},
                "owners": doc["owners"],
                "code_version": hashlib.sha256(step["value"].encode()).hexdigest()[:16],
                "metadata": {"step": step["name"], "layer": step["layer"], "inputs": step.get("inputs", {})},
                "source": str(source),
                "line": line,
            }
        )
    return out


HANDWRITTEN = '''"""Hand-written Dagster code for the same steps: one @dg.asset per step, built by a loop."""

import json
import warnings
from pathlib import Path

import dagster as dg

HERE = Path(__file__).parent
SPEC = json.loads((HERE / "spec.json").read_text())


def make_asset(a):
    @dg.asset(
        key=a["key"],
        deps=[dg.AssetKey(d) for d in a["deps"]],
        group_name=a["group"],
        description=a["description"],
        kinds=set(a["kinds"]),
        tags=a["tags"],
        owners=a["owners"],
        code_version=a["code_version"],
        metadata={
            **a["metadata"],
            "dagster/code_references": dg.CodeReferencesMetadataValue(
                code_references=[dg.LocalFileCodeReference(file_path=a["source"], line_number=a["line"])]
            ),
        },
        io_manager_key="io_manager",
    )
    def compute(context: dg.AssetExecutionContext) -> None:
        return None

    return compute


with warnings.catch_warnings():  # code references are beta; odibi silences the warning too
    warnings.simplefilter("ignore", dg.BetaWarning)
    assets = [make_asset(a) for pipeline in SPEC["pipelines"] for a in pipeline["assets"]]
jobs = [
    dg.define_asset_job(
        name=pipeline["name"],
        # By key, as odibi does (AssetSelection.groups() resolves against every asset, per job).
        selection=dg.AssetSelection.assets(*(dg.AssetKey(a["key"]) for a in pipeline["assets"])),
        description=pipeline["description"],
        tags={"pipeline": pipeline["name"]},
    )
    for pipeline in SPEC["pipelines"]
]
defs = dg.Definitions(
    assets=assets,
    jobs=jobs,
    resources={"io_manager": dg.FilesystemIOManager(base_dir=str(HERE / "work"))},
)
'''

ODIBI = '''"""odibi_dagster: the same steps as YAML pipeline documents."""

from pathlib import Path

from odibi_dagster import build_definitions

HERE = Path(__file__).parent
defs = build_definitions(HERE / "pipelines", base_dir=HERE / "work")
'''

MODULES = {"odibi": "odibi_defs.py", "hand": "handwritten.py"}


def make_project(steps: int, fmt: str = "yaml") -> Path:
    """The generated project for ``steps`` steps, pipelines as ``fmt`` (cached under bench/data/)."""
    import yaml

    root = DATA / f"defs_scale_{steps}_{fmt}"
    if (root / "spec.json").exists():
        return root
    tmp = Path(tempfile.mkdtemp(prefix=f"defs_scale_{steps}.", dir=DATA.mkdir(parents=True, exist_ok=True) or DATA))
    (tmp / "pipelines").mkdir()
    spec = []
    for index, size in enumerate(pipeline_sizes(steps)):
        doc = _pipeline(index, size)
        path = tmp / "pipelines" / f"{doc['pipeline']}.{fmt}"
        text = yaml.safe_dump(doc, sort_keys=False, width=120) if fmt == "yaml" else json.dumps(doc, indent=2)
        path.write_text(text)
        spec.append(
            {
                "name": doc["pipeline"],
                "description": doc["description"],
                "assets": _hand_spec(doc, root / "pipelines" / path.name),
            }
        )
    (tmp / "spec.json").write_text(json.dumps({"pipelines": spec}))
    (tmp / MODULES["hand"]).write_text(HANDWRITTEN)
    (tmp / MODULES["odibi"]).write_text(ODIBI)
    assert sum(len(p["assets"]) for p in spec) == steps
    tmp.rename(root)
    return root


# -- children -------------------------------------------------------------------------------------


def child_load(module: Path) -> dict[str, Any]:
    """Import + definitions + repository + all jobs, in this fresh process."""
    import importlib.util

    started = time.perf_counter()
    import dagster as dg  # noqa: F401  (counted: both sides import Dagster)

    imported = time.perf_counter()
    spec = importlib.util.spec_from_file_location("bench_defs", module)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    built = time.perf_counter()
    repo = mod.defs.get_repository_def()
    repo.load_all_definitions()
    jobs = repo.get_all_jobs()
    done = time.perf_counter()
    return {
        "load_s": done - started,
        "import_s": imported - started,
        "defs_s": built - imported,
        "repo_s": done - built,
        "jobs": len(jobs),
        "assets": len(repo.asset_graph.get_all_asset_keys()),
        **proc_status(),
    }


def measure_location(module: Path, log: Path) -> dict[str, Any]:
    """Spawn ``dagster api grpc`` for ``module`` and load it as a code location, as the webserver does."""
    import dagster as dg
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._grpc.client import DagsterGrpcClient

    port = free_port()
    cmd = [sys.executable, "-m", "dagster", "api", "grpc", "-f", str(module), "-h", "127.0.0.1", "-p", str(port)]
    origin = GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port, location_name="bench")
    with dg.DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        with process_group(cmd, log, cwd=module.parent) as server:
            client = DagsterGrpcClient(port=port, host="127.0.0.1")
            while True:
                if server.poll() is not None:
                    raise SystemExit(f"dagster api grpc exited:\n{log.read_text()[-4000:]}")
                try:
                    client.ping("")
                    break
                except Exception:
                    time.sleep(0.1)
            answered = time.perf_counter()
            location = origin.create_location(instance)
            loaded = time.perf_counter()
            stats = proc_status(server.pid)
            repo_name = next(iter(location.repository_names))
            snapshot = client.external_repository(RemoteRepositoryOrigin(origin, repo_name), defer_snapshots=True)
            jobs = len(location.get_repository(repo_name).get_all_jobs())
            location.cleanup()
    return {
        "location_s": loaded - started,
        "answer_s": answered - started,
        "server_cpu_s": stats["cpu_s"],
        "server_rss_mb": stats["rss_mb"],
        "server_peak_mb": stats["peak_mb"],
        "snapshot_mb": len(snapshot) / 2**20,
        "jobs": jobs,
    }


# -- parent ---------------------------------------------------------------------------------------

LOAD_FIELDS = (("load_s", "load s"), ("cpu_s", "load CPU s"), ("rss_mb", "RSS MB"), ("peak_mb", "peak MB"))
LOC_FIELDS = (
    ("location_s", "location s"),
    ("server_cpu_s", "server CPU s"),
    ("server_rss_mb", "server RSS MB"),
    ("server_peak_mb", "server peak MB"),
)


def _pair_text(row: dict[str, Any], field: str, label: str) -> str:
    c, o, h = row["odibi_cold"][field], row["odibi"][field], row["hand"][field]
    return f"{label} {c:.2f}/{o:.2f} vs {h:.2f} ({c / h:.2f}x/{o / h:.2f}x)"


def _repeat(root: Path, part: str, first_hand: bool) -> dict[str, Any]:
    """One repeat of ``part``: odibi with an empty SQL-check cache (``odibi_cold``: the first load
    of a project on a machine), then with the cache that load left (``odibi``: every later load,
    the code server's restarts and each run's worker), and the hand-written side, which goes
    first on odd repeats (a warm page cache or a busy neighbour hits both)."""
    row: dict[str, Any] = {}
    if first_hand:
        row["hand"] = run_child(__file__, [part, str(root / MODULES["hand"])])
    with tempfile.TemporaryDirectory(prefix="odibi-cache.") as cache:
        env = {"ODIBI_CACHE_DIR": cache}
        row["odibi_cold"] = run_child(__file__, [part, str(root / MODULES["odibi"])], env=env)
        row["odibi"] = run_child(__file__, [part, str(root / MODULES["odibi"])], env=env)
    if not first_hand:
        row["hand"] = run_child(__file__, [part, str(root / MODULES["hand"])])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="1000,5000", help="comma-separated sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="load,location", help="load and/or location")
    parser.add_argument("--format", default="yaml", choices=("yaml", "json"), help="of the pipeline documents")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with every figure")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        kind, module = args.child
        result = child_load(Path(module)) if kind == "load" else measure_location(Path(module), Path(module + ".log"))
        print(json.dumps(result))
        return
    parts = args.only.split(",")
    summary: dict[str, Any] = {}
    for steps in (int(s) for s in args.steps.split(",")):
        root = make_project(steps, args.format)
        pipelines = len(list((root / "pipelines").iterdir()))
        rows: dict[str, list[dict[str, Any]]] = {p: [] for p in parts}
        for rep in range(args.repeat):
            for part in parts:
                row = _repeat(root, part, first_hand=rep % 2 == 1)
                rows[part].append(row)
                fields = LOAD_FIELDS if part == "load" else LOC_FIELDS
                print(
                    f"  {steps:>5} steps, {part:<8} repeat {rep + 1}: "
                    + "   ".join(_pair_text(row, f, label) for f, label in fields),
                    flush=True,
                )
        lines = []
        for part in parts:
            fields = LOAD_FIELDS if part == "load" else LOC_FIELDS
            if part == "location":
                fields = (*fields, ("snapshot_mb", "snapshot MB"))
            for f, label in fields:
                target = TIME_TARGET if f in ("load_s", "location_s") else RSS_TARGET if "rss" in f else None
                for side, note in (("odibi", ""), ("odibi_cold", ", cold cache")):
                    p = paired(rows[part], f, a=side)
                    verdict = "" if target is None else ("ok" if p["ratio"] <= target else f"> {target}x")
                    lines.append([f"{part}: {label}{note}", p[side], p["hand"], f"{p['ratio']:.2f}x", verdict])
                    summary[f"{steps}/{part}/{f}{note and '/cold'}"] = p
        if "load" in parts:
            for f, label in (("import_s", "import dagster s"), ("defs_s", "definitions s"), ("repo_s", "repo+jobs s")):
                p = paired(rows["load"], f)
                lines.append([f"load: {label}", p["odibi"], p["hand"], f"{p['ratio']:.2f}x", ""])
        print_table(
            f"definitions, {steps:,} steps in {pipelines} {args.format.upper()} pipelines "
            f"(median of {args.repeat}, ratios paired per repeat)",
            ["figure", "odibi", "hand-written", "ratio", "target"],
            lines,
        )
    if args.json:
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
