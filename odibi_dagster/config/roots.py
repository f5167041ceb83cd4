"""Where the relative paths of a config resolve.

* A **pipeline document** (a mapping with ``pipeline:``/``steps:``) resolves them against its
  own folder: the config and its data move together.
* **ODIBI's own forms** (a bare JSON/YAML list of steps, a SQLite or CSV config table) were
  written to run from ODIBI's working directory, usually the project root: its walkthrough
  keeps ``odibi_core/examples/configs/simple_pipeline.json`` with ``"value":
  "odibi_core/examples/data/sample.csv"``. They resolve against the **ODIBI project root**:
  of the config's folder and the folders above it, the nearest one under which the most of
  the pipeline's relative source paths exist (the config's folder when none do). It does not
  depend on the working directory, so it is the same under ``odibi-dagster run`` and
  ``dagster dev``.

``base_dir`` / ``$ODIBI_BASE_DIR`` replaces both rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from odibi_dagster.config.models import PipelineConfig

# How many folders above the config's own the project root may be.
MAX_LEVELS_UP = 8
_GLOB_CHARS = frozenset("*?[")


def _probe(value: str) -> str | None:
    """The leading, template- and glob-free part of a relative local path (None if none)."""
    value = value.strip()
    if not value or "://" in value or os.path.isabs(value) or value.lstrip().upper().startswith(("SELECT", "WITH")):
        return None
    parts: list[str] = []
    for part in Path(value).parts:
        if "{{" in part or "{%" in part or _GLOB_CHARS & set(part):
            break
        parts.append(part)
    return os.path.join(*parts) if parts else None


def source_probes(pipeline: PipelineConfig) -> list[str]:
    """Relative local paths the pipeline reads (ingest values, file-watch folders)."""
    values: Iterable[str] = [
        s.value
        for s in pipeline.steps
        if s.layer == "ingest" and s.type not in ("function", "api") and not s.params.get("connection")
    ]
    values = [*values, *(getattr(sensor, "path", "") for sensor in pipeline.sensors)]
    return [p for p in (_probe(v) for v in values) if p]


def project_root_candidates(pipeline: PipelineConfig) -> list[tuple[Path, int]]:
    """Folders from the config's own upwards, each with how many source probes exist under it."""
    probes = source_probes(pipeline)
    folder = pipeline.config_dir.resolve()
    out: list[tuple[Path, int]] = []
    for candidate in [folder, *folder.parents][: MAX_LEVELS_UP + 1]:
        out.append((candidate, sum((candidate / probe).exists() for probe in probes)))
    return out


def odibi_project_root(pipeline: PipelineConfig) -> tuple[Path, list[Path]]:
    """The ODIBI project root of an ODIBI-form config, and other folders that would do as well."""
    candidates = project_root_candidates(pipeline)
    best = max((score for _, score in candidates), default=0)
    if best == 0:
        return pipeline.config_dir.resolve(), []
    tied = [folder for folder, score in candidates if score == best]
    return tied[0], tied[1:]
