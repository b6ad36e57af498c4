#!/usr/bin/env python3
"""Checks the alert rules beyond what promtool does:

- deploy/prometheus/alerts.yaml is the chart's files/alerts.yaml (a link to
  it), so the Prometheus config and the PrometheusRule share one source;
- every alert has a severity (critical, warning or info) and the summary,
  description and runbook_url annotations; the runbook_url is the placeholder
  base (which the chart replaces) plus an anchor that docs/runbooks.md has;
- every alert has a unit test in deploy/prometheus/tests/ where it fires and
  one where it stays silent.

Usage: deploy/checks/alerts.py [REPO_ROOT]
"""

import re
import sys
from pathlib import Path

import yaml
from report import finish

RUNBOOK_BASE = "https://github.com/example/offers/blob/main/docs/runbooks.md"
SEVERITIES = {"critical", "warning", "info"}


def anchors(markdown):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug)
    return out


def main(argv):
    root = Path(argv[0] if argv else ".").resolve()
    chart_rules = root / "helm/offers/files/alerts.yaml"
    linked = root / "deploy/prometheus/alerts.yaml"
    runbooks = root / "docs/runbooks.md"
    problems = []

    if not linked.is_symlink() or linked.resolve() != chart_rules.resolve():
        problems.append(f"{linked.relative_to(root)} must be a link to {chart_rules.relative_to(root)} (one source)")

    rules = [r for g in yaml.safe_load(chart_rules.read_text())["groups"] for r in g["rules"] if "alert" in r]
    names = [r["alert"] for r in rules]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"alert {dup} is defined more than once")
    have_anchors = anchors(runbooks.read_text()) if runbooks.exists() else set()
    if not runbooks.exists():
        problems.append("docs/runbooks.md is missing")
    for r in rules:
        name, ann = r["alert"], r.get("annotations", {})
        if r.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity label must be one of {sorted(SEVERITIES)}")
        for key in ("summary", "description", "runbook_url"):
            if not str(ann.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        url = ann.get("runbook_url", "")
        if url:
            if not url.startswith(RUNBOOK_BASE + "#"):
                problems.append(f"{name}: runbook_url must be {RUNBOOK_BASE}#<anchor> (the chart replaces the base)")
            elif url.split("#", 1)[1] not in have_anchors:
                problems.append(f"{name}: docs/runbooks.md has no heading for #{url.split('#', 1)[1]}")

    fires, silent, cases = set(), set(), 0
    for test_file in sorted((root / "deploy/prometheus/tests").glob("*.yaml")):
        for test in yaml.safe_load(test_file.read_text()).get("tests", []):
            for case in test.get("alert_rule_test", []):
                cases += 1
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    for name in names:
        if name not in fires:
            problems.append(f"{name}: no unit test where it fires")
        if name not in silent:
            problems.append(f"{name}: no unit test where it stays silent")
    for name in sorted((fires | silent) - set(names)):
        problems.append(f"unit tests name {name}, which is not an alert")

    covered = sum(1 for n in names if n in fires and n in silent)
    with_runbook = sum(1 for r in rules if r.get("annotations", {}).get("runbook_url", "").split("#")[-1] in have_anchors)
    return finish("alerts", problems, f"{len(names)} alerts, {covered} with firing and silent tests ({cases} test cases), "
                  f"{with_runbook} with a runbook section")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
