#!/usr/bin/env python3
"""Sanity of deploy/grafana/offers.json (its metric names are checked by
metrics.py): valid JSON with a uid and a title, unique panel ids, every
query panel on the `${datasource}` variable with at least one query, panels
inside the 24-column grid and not overlapping.

Usage: deploy/checks/dashboard.py [DASHBOARD_JSON]
"""

import json
import sys
from pathlib import Path

from report import finish


def main(argv):
    path = Path(argv[0] if argv else "deploy/grafana/offers.json")
    problems = []
    try:
        dash = json.loads(path.read_text())
    except ValueError as e:
        print(f"dashboard: FAILED: {path} is not JSON: {e}")
        return 1
    for key in ("uid", "title", "panels", "schemaVersion"):
        if not dash.get(key):
            problems.append(f"no {key}")
    variables = {v.get("name") for v in dash.get("templating", {}).get("list", [])}
    if "datasource" not in variables:
        problems.append("no `datasource` variable")
    ids, cells, queries = set(), {}, 0
    for p in dash.get("panels", []):
        title = p.get("title")
        if p.get("id") in ids:
            problems.append(f"panel id {p.get('id')} used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {title!r} runs past the 24 grid columns")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    problems.append(f"panels {cells[(x, y)]!r} and {title!r} overlap")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r} does not use the ${{datasource}} variable")
        targets = [t for t in p.get("targets", []) if t.get("expr")]
        if not targets:
            problems.append(f"panel {title!r} has no query")
        queries += len(targets)
    panels = sum(1 for p in dash.get("panels", []) if p.get("type") != "row")
    return finish("dashboard", problems, f"{panels} panels, {queries} queries")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
