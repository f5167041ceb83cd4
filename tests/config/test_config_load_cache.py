"""The load cache: a second load of unchanged configs parses neither their SQL nor their YAML,
gives the same pipelines and the same problems, and a cache that cannot be used never fails a load."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from config_support import ingest, sql_step

from odibi_dagster import ConfigValidationError, load_pipelines
from odibi_dagster.config import load_cache
from odibi_dagster.config.loaders import yaml_files
from odibi_dagster.config.validation import sql as sql_checks

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "cache"
    monkeypatch.setenv(load_cache.CACHE_DIR_ENV, str(folder))
    load_cache.reset()
    yield folder
    load_cache.reset()


def _write(folder: Path, sql: str, **extra: object) -> Path:
    folder.mkdir(exist_ok=True)
    doc = {"pipeline": "sales", **extra, "steps": [ingest(), sql_step(sql=sql)]}
    path = folder / "sales.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any SQL or YAML parse fail the test: what follows must come from the cache."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("parsed although the outcome is cached")

    monkeypatch.setattr(sql_checks, "_parse_outcome", refuse)
    monkeypatch.setattr(yaml_files, "compose_yaml", refuse)


def test_a_second_load_reads_sql_and_yaml_from_the_cache(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "p", "SELECT id, amount FROM data WHERE amount > 1")
    (first,) = load_pipelines(tmp_path / "p")
    assert (cache_dir / "load-cache.sqlite").is_file()
    load_cache.reset()  # a new process: only the file remains
    _no_parsing(monkeypatch)
    (second,) = load_pipelines(tmp_path / "p")
    assert second.model_dump() == first.model_dump()
    assert [s.line for s in second.steps] == [s.line for s in first.steps]


def test_a_cached_parse_error_and_a_cached_unknown_table_are_reported_as_before(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def problems() -> list[str]:
        with pytest.raises(ConfigValidationError) as err:
            load_pipelines(tmp_path / "p")
        return [str(p) for p in err.value.problems]

    for sql, expected in (("SELEC id FRM data", "SQL does not parse (duckdb dialect)"),
                          ("SELECT id FROM elsewhere", "SQL names table 'elsewhere'")):  # fmt: skip
        _write(tmp_path / "p", sql)
        fresh = problems()
        assert any(expected in p for p in fresh), fresh
        load_cache.reset()
        with monkeypatch.context() as patched:
            _no_parsing(patched)
            assert problems() == fresh


def test_an_edited_file_is_parsed_again(cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path / "p", "SELECT id FROM data")
    load_pipelines(tmp_path / "p")
    load_cache.reset()
    _write(tmp_path / "p", "SELECT id FROM nowhere")
    with pytest.raises(ConfigValidationError, match="SQL names table 'nowhere'"):
        load_pipelines(tmp_path / "p")


def test_a_document_json_cannot_carry_is_parsed_each_time(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unquoted date is a datetime.date to YAML; JSON would hand back a string.
    path = _write(tmp_path / "p", "SELECT id FROM data")
    path.write_text(path.read_text() + "tags: {since: 2024-01-01}\n")
    (first,) = load_pipelines(tmp_path / "p")
    load_cache.reset()
    calls: list[str] = []
    real = yaml_files.compose_yaml
    monkeypatch.setattr(yaml_files, "compose_yaml", lambda text: calls.append(text) or real(text))
    (second,) = load_pipelines(tmp_path / "p")
    assert len(calls) == 1 and second.model_dump() == first.model_dump()
    assert datetime.date(2024, 1, 1) in [v for v in yaml.safe_load(path.read_text())["tags"].values()]


@pytest.mark.parametrize("setting", ["off", "file", "damaged"])
def test_a_cache_that_cannot_be_used_never_fails_a_load(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cache"
    if setting == "file":  # a file where the folder should be: nothing can be written
        folder.write_text("not a folder")
    if setting == "damaged":
        folder.mkdir()
        (folder / "load-cache.sqlite").write_bytes(b"\x00garbage" * 64)
    monkeypatch.setenv(load_cache.CACHE_DIR_ENV, "off" if setting == "off" else str(folder))
    load_cache.reset()
    _write(tmp_path / "p", "SELECT id FROM data")
    try:
        for _ in range(2):
            (pipeline,) = load_pipelines(tmp_path / "p")
            assert pipeline.steps[1].value == "SELECT id FROM data"
            load_cache.reset()
        with pytest.raises(ConfigValidationError, match="SQL names table 'nowhere'"):
            _write(tmp_path / "p", "SELECT id FROM nowhere")
            load_pipelines(tmp_path / "p")
    finally:
        load_cache.reset()
    if setting == "off":
        assert not folder.exists()


def test_definitions_loaded_with_a_warm_cache_do_not_import_sqlglot(cache_dir: Path) -> None:
    """The code server and every run's worker load the definitions: with the cache warm, the
    SQL parser (and its import) stays out of them."""
    script = (
        "import sys; from odibi_dagster import build_definitions; "
        "defs = build_definitions('definitions/pipelines', base_dir=sys.argv[1]); "
        "defs.get_repository_def().get_all_jobs(); print('sqlglot' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), load_cache.CACHE_DIR_ENV: str(cache_dir)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, str(cache_dir.parent / "work")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr[-2000:] for r in runs]
    assert [r.stdout.strip().splitlines()[-1] for r in runs] == ["True", "False"]
