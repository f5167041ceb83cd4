"""Generate the example location's small sample data and its SQLite-held config.

Run again any time: it rewrites the files deterministically (seeded).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import sqlite3
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "data"


def sample_csv() -> None:
    # ODIBI's walkthrough sample: 10 rows, 6 of them with value > 100.
    values = [50, 150, 80, 200, 120, 90, 300, 101, 99, 180]
    with open(DATA / "sample.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "name", "value", "category", "timestamp"])
        for i, v in enumerate(values, start=1):
            w.writerow([i, f"item_{i}", v, ["A", "B", "C"][i % 3], f"2024-01-{i:02d}T08:00:00"])


def sales_csv(rows: int = 2000) -> None:
    rng = random.Random(42)
    stores = ["north", "south", "east", "west"]
    start = dt.date(2024, 1, 1)
    (DATA / "raw").mkdir(parents=True, exist_ok=True)
    with open(DATA / "raw" / "sales.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sale_id", "store", "amount", "quantity", "sale_date"])
        for i in range(1, rows + 1):
            amount = round(rng.uniform(-20, 500), 2) if i % 37 else ""  # some invalid rows
            day = (start + dt.timedelta(days=i % 14)).isoformat()
            w.writerow([i, rng.choice(stores), amount, rng.randint(1, 9), day])
    # Daily files for the partitioned pipeline: data/daily/<date>/sales.csv
    for day in range(14):
        d = start + dt.timedelta(days=day)
        folder = DATA / "daily" / d.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "sales.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sale_id", "store", "amount", "sale_date"])
            for j in range(50):
                w.writerow([day * 1000 + j, rng.choice(stores), round(rng.uniform(1, 300), 2), d.isoformat()])


def inventory_sqlite_config() -> None:
    """ODIBI's SQL-held config: a transformation_config table."""
    with open(DATA / "inventory.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sku", "warehouse", "on_hand", "reorder_level"])
        rng = random.Random(7)
        for i in range(1, 201):
            w.writerow([f"SKU{i:04d}", rng.choice(["AMS", "LAG", "NYC"]), rng.randint(0, 120), rng.randint(10, 40)])
    db = HERE / "pipelines" / "inventory.db"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE transformation_config (project TEXT, Layer TEXT, StepName TEXT, StepType TEXT, Engine TEXT,"
        " Value TEXT, Params TEXT, Inputs TEXT, Outputs TEXT, enabled INTEGER)"
    )
    rows = [
        (
            "inventory",
            "Ingest",
            "read_inventory",
            "config_op",
            "Pandas",
            "../data/inventory.csv",
            None,
            None,
            json.dumps({"data": "raw_inventory"}),
            1,
        ),
        (
            "inventory",
            "Transform",
            "flag_reorders",
            "SQL",
            "Pandas",
            "SELECT sku, warehouse, on_hand, reorder_level, on_hand < reorder_level AS needs_reorder FROM inv",
            None,
            json.dumps({"inv": "raw_inventory"}),
            json.dumps({"data": "inventory_flags"}),
            1,
        ),
        (
            "inventory",
            "Transform",
            "reorder_by_warehouse",
            "SQL",
            "Pandas",
            "SELECT warehouse, COUNT(*) AS skus_to_reorder FROM flags WHERE needs_reorder GROUP BY warehouse",
            None,
            json.dumps({"flags": "inventory_flags"}),
            json.dumps({"data": "reorder_summary"}),
            1,
        ),
        (
            "inventory",
            "Store",
            "save_reorders",
            "config_op",
            "Pandas",
            "../output/reorder_summary.csv",
            json.dumps({"mode": "overwrite"}),
            json.dumps({"data": "reorder_summary"}),
            None,
            1,
        ),
        (
            "inventory",
            "Store",
            "disabled_debug_dump",
            "config_op",
            "Pandas",
            "../output/debug.json",
            None,
            json.dumps({"data": "inventory_flags"}),
            None,
            0,
        ),
    ]
    conn.executemany("INSERT INTO transformation_config VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
    conn.commit()
    conn.close()


def landing_folder() -> None:
    """The file-watch example (``pipelines/daily_sales.yaml``): an empty ``incoming/`` folder the
    sensor watches, and a corrected day in ``corrections/`` to drop into it."""
    incoming = DATA / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    (incoming / "README.md").write_text(
        "Drop `sales_YYYY-MM-DD.csv` files here: the `daily_sales__watch_ingest_daily_sales` sensor\n"
        "re-runs that day's partition from the file (try `cp ../corrections/sales_2024-01-03.csv .`).\n"
    )
    rng = random.Random(2024)
    folder = DATA / "corrections"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sales_2024-01-03.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sale_id", "store", "amount", "sale_date"])
        for j in range(60):
            store = rng.choice(["north", "south", "east", "west"])
            w.writerow([2000 + j, store, round(rng.uniform(1, 300), 2), "2024-01-03"])


if __name__ == "__main__":
    DATA.mkdir(exist_ok=True)
    sample_csv()
    sales_csv()
    inventory_sqlite_config()
    landing_folder()
    print(f"sample data written under {DATA}")
