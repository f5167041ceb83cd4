"""ODIBI's ``type: api`` ingest: a JSON endpoint read into a DataFrame."""

from __future__ import annotations

from typing import Any


def read_api(url: str, params: dict[str, Any]) -> Any:
    """ODIBI's ``type: api`` ingest: GET a JSON endpoint into a DataFrame.

    ``params``: ``headers`` (dict; use ``{"secret": NAME}`` values for tokens),
    ``record_path`` (where the list of records sits in the response), ``timeout`` (s).
    """
    import json
    import urllib.request

    import pandas as pd

    unknown = set(params) - {"headers", "record_path", "timeout"}
    if unknown:
        raise ValueError(f"unknown api reader param(s) {sorted(unknown)}; supported: headers, record_path, timeout")
    request = urllib.request.Request(url, headers={str(k): str(v) for k, v in (params.get("headers") or {}).items()})
    with urllib.request.urlopen(request, timeout=float(params.get("timeout", 60))) as response:
        payload = json.loads(response.read().decode("utf-8"))
    for part in str(params.get("record_path") or "").split("."):
        if part:
            payload = payload[part]
    if isinstance(payload, dict):
        payload = [payload]
    return pd.json_normalize(payload)
