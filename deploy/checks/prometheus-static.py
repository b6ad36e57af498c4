#!/usr/bin/env python3
"""Writes a variant of deploy/prometheus/prometheus.yml that Debian's
promtool can check: its build lacks Kubernetes service discovery, so each
`kubernetes_sd_configs` becomes a `static_configs` target. Everything else
(relabelling, rule files, intervals) is kept and checked as written; rule
files are made absolute so the variant can live elsewhere.

Usage: deploy/checks/prometheus-static.py PROMETHEUS_YML OUT_YML
"""

import sys
from pathlib import Path

import yaml


def main(argv):
    source, out = Path(argv[0]), Path(argv[1])
    config = yaml.safe_load(source.read_text())
    replaced = 0
    for job in config.get("scrape_configs", []):
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
            replaced += 1
    config["rule_files"] = [str((source.parent / f).resolve()) for f in config.get("rule_files", [])]
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"prometheus-static: {replaced} Kubernetes discovery configs replaced by static targets in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
