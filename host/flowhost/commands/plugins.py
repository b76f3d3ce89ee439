"""``flowhost plugins list`` and ``flowhost plugins describe``.

Local plugins come from entry-point metadata; remote ones from ``[remote]`` in
flowhost.toml. ``--check`` imports each local plugin and calls each remote one
(``ListPlugins`` and the standard health check).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowhost.catalog import Catalog, PluginLoadError
from flowhost.problems import UserInputError

if TYPE_CHECKING:  # listing imports no pydantic: the invokers are imported by --check only
    from flowhost.invokers import Invoker


def list_command(args: argparse.Namespace) -> int:
    catalog = Catalog(environ=os.environ, cwd=Path.cwd())
    entries = catalog.entries(with_distributions=True)
    rows: list[dict[str, Any]] = []
    broken = 0
    for name in sorted(entries):
        entry = entries[name]
        row: dict[str, Any] = {
            "name": name,
            "version": entry.distribution_version,
            "distribution": entry.distribution,
            "target": entry.target,
            "transport": entry.transport,
            "shadows": list(entry.shadows),
        }
        if entry.transport == "grpc":
            row["health"] = None
        if args.check:
            try:
                invoker = catalog.get(name)
                row.update(ok=True, error=None, plugin_version=invoker.version)
                if entry.transport == "grpc":
                    row["version"] = invoker.version
                    row["health"] = _health(invoker, catalog)
                    if row["health"] == "NO_HEALTH_SERVICE":
                        row.update(ok=False, error="its server does not serve the standard "
                                   "grpc.health.v1.Health service, which plugin servers must")
                    elif row["health"] not in ("SERVING", "UNKNOWN"):
                        row.update(ok=False, error=f"health: {row['health']}")
            except PluginLoadError as exc:
                row.update(ok=False, error=exc.reason)
                if entry.transport == "grpc":
                    row["health"] = "UNREACHABLE"
            if row["ok"] and entry.shadows:
                row.update(ok=False, error=_shadow_text(entry.shadows))
            if not row["ok"]:
                broken += 1
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No plugins installed (entry-point group 'flowhost.plugins') or configured "
              "([remote] in flowhost.toml).")
    else:
        _print_table(rows, args.check)
    if not args.check:
        for row in rows:
            if row["shadows"]:
                print(f"warning: plugin '{row['name']}': {_shadow_text(row['shadows'])}",
                      file=sys.stderr)
    if args.check and broken:
        print(f"{broken} of {len(rows)} plugins are broken", file=sys.stderr)
        return 1
    return 0


def _health(invoker: Invoker, catalog: Catalog) -> str:
    from flowhost.invokers.grpc.discovery import check_health
    from flowhost.invokers.grpc.invoker import GrpcInvoker

    if not isinstance(invoker, GrpcInvoker):
        return "UNKNOWN"
    return check_health(invoker.endpoint, invoker.served_as,
                        catalog.config.grpc.connect_timeout)


def _print_table(rows: list[dict[str, Any]], checked: bool) -> None:
    """A row per plugin: its package (distribution and version) and, once ``--check`` has
    imported or called it, the plugin's own version beside it."""
    headers = ["NAME", *(["VERSION"] if checked else []), "PACKAGE", "TARGET",
               *(["CHECK"] if checked else [])]
    table = [
        [row["name"], *([row.get("plugin_version") or "?"] if checked else []),
         _package(row), row["target"], *([_check_cell(row)] if checked else [])]
        for row in rows
    ]
    widths = [max(len(str(r[i])) for r in [headers, *table]) for i in range(len(headers))]
    for row in [headers, *table]:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(row)]
        print("  ".join(cells).rstrip())
    if not checked and any(row["transport"] == "local" for row in rows):
        print("(the plugins' own versions: flowhost plugins list --check, which imports them)")


def _package(row: dict[str, Any]) -> str:
    if row["transport"] == "grpc":
        return "(remote)"
    return f"{row['distribution'] or '?'} {row['version'] or '?'}"


def _shadow_text(shadows: list[str] | tuple[str, ...]) -> str:
    return (f"another installed package offers the same name ({', '.join(shadows)}), which "
            "is not used: the first on sys.path wins. Uninstall one, or rename yours")


def _check_cell(row: dict[str, Any]) -> str:
    text = "ok" if row["ok"] else f"BROKEN: {row['error']}"
    if row.get("health") and row["ok"]:
        text += f" ({row['health']})"
    return text


def describe_command(args: argparse.Namespace) -> int:
    catalog = Catalog(environ=os.environ, cwd=Path.cwd())
    try:
        invoker = catalog.get(args.name)
    except PluginLoadError as exc:
        suggestion = f" — {exc.suggestion}" if exc.suggestion else ""
        raise UserInputError(f"{exc}{suggestion}") from None
    entry = catalog.entries().get(args.name)
    target = getattr(invoker, "url", None) or (entry.target if entry else None)
    data = {
        "name": invoker.name,
        "version": invoker.version,
        "description": invoker.description,
        "idempotent": invoker.idempotent,
        "transport": invoker.transport,
        "target": target,
        "input_schema": invoker.input_schema,
        "output_schema": invoker.output_schema,
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{invoker.name} {invoker.version} ({invoker.transport})"
          + (f" — {invoker.description}" if invoker.description else ""))
    print(f"idempotent: {'yes' if invoker.idempotent else 'no'}")
    if invoker.transport == "grpc":
        print(f"served at: {target}")
    elif entry:
        print(f"entry point: {entry.target}")
    print("inputs (JSON Schema):")
    print(_indent(json.dumps(invoker.input_schema, indent=2)))
    print("outputs (JSON Schema):")
    print(_indent(json.dumps(invoker.output_schema, indent=2)))
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
