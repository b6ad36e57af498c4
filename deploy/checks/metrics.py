#!/usr/bin/env python3
"""Every metric that the alert rules and the Grafana dashboard name must be
one the code exports, or be listed in deploy/prometheus/pending-metrics.txt.

Exported names are read from the Rust sources on every run: the string
literal that starts a `counter!(`, `gauge!(` or `histogram!(` call. The
Prometheus exporter shows a counter as NAME and NAME_total, a histogram as
NAME_bucket, NAME_sum and NAME_count (or quantiles of NAME), a gauge as NAME.
Series that Prometheus makes itself (`up`, `scrape_*`) are always allowed.

The label values they select must be ones the code writes too: each value
in a `label="v"` or `label=~"a|b"` matcher (bar the labels Prometheus and
Kubernetes add, and `$variables`) must be a string literal in the Rust
sources, so an alert cannot count a `result` the code never emits.

Usage: deploy/checks/metrics.py [REPO_ROOT]
"""

import json
import re
import sys
from pathlib import Path

import yaml
from report import finish

MACRO = re.compile(r"\b(counter|gauge|histogram)!\s*\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"", re.S)
# A histogram with buckets of its own is named in a constant its crate
# declares (`..._HISTOGRAM: (&str, &[f64]) = ("name", &[...])`).
HISTOGRAM_CONST = re.compile(r"_HISTOGRAM:\s*\(&str,\s*&\[f64\]\)\s*=\s*\(\s*\"([a-zA-Z_:][a-zA-Z0-9_:]*)\"", re.S)
SKIP_DIRS = {"target", ".git", "node_modules", ".offers"}
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                  "scrape_series_added"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
            "offset", "inf", "nan", "atan2"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENT = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|=)\s*"((?:\\.|[^"\\])*)"')
ADDED_LABELS = {"namespace", "pod", "role", "job", "instance", "container", "service", "le", "quantile"}
PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]+$")


def label_values(expr):
    """(label, value) of every equality or alternation matcher in braces."""
    for selector in re.findall(r"\{([^{}]*)\}", expr):
        for label, op, value in MATCHER.findall(selector):
            if label in ADDED_LABELS or "$" in value:
                continue
            # An alternative with a regex in it (`5..`) is a pattern, not a value.
            alternatives = [v for v in value.split("|") if not re.search(r"[.*+?()\[\]]", v)] if op == "=~" else [value]
            for one in alternatives:
                if PLAIN_VALUE.match(one):
                    yield label, one


def string_literals(root):
    found = set()
    for path in rust_sources(root):
        found.update(re.findall(r'"([A-Za-z0-9_.:/-]+)"', path.read_text(errors="replace")))
    return found


def rust_sources(root):
    for path in root.rglob("*.rs"):
        if not SKIP_DIRS.intersection(path.relative_to(root).parts):
            yield path


def exported(root):
    names = {}
    for path in rust_sources(root):
        text = path.read_text(errors="replace")
        for kind, name in MACRO.findall(text):
            names.setdefault(name, set()).add(kind)
        for name in HISTOGRAM_CONST.findall(text):
            names.setdefault(name, set()).add("histogram")
    return names


def exposed_names(name, kinds):
    out = {name}
    if "counter" in kinds and not name.endswith("_total"):
        out.add(name + "_total")
    if "histogram" in kinds:
        out |= {name + "_bucket", name + "_sum", name + "_count"}
    return out


def strip_balanced(expr, open_ch, close_ch):
    out, depth = [], 0
    for ch in expr:
        if ch == open_ch:
            depth += 1
            continue
        if ch == close_ch and depth:
            depth -= 1
            continue
        if not depth:
            out.append(ch)
    return "".join(out)


def metric_names(expr):
    """Metric names in a PromQL expression (a lexical reading, enough for ours)."""
    if "__name__" in expr:
        raise ValueError("selects metrics by __name__; name them explicitly")
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = strip_balanced(text, "{", "}")
    text = strip_balanced(text, "[", "]")
    text = GROUPING.sub(" ", text)
    names = set()
    for m in IDENT.finditer(text):
        word, call = m.group(1), m.group(2)
        if call or word in KEYWORDS:
            continue
        names.add(word)
    return names


def rule_exprs(path):
    data = yaml.safe_load(path.read_text())
    for group in data["groups"]:
        for rule in group["rules"]:
            yield f"{path.name}: {rule.get('alert') or rule.get('record')}", rule["expr"]


def dashboard_exprs(path):
    data = json.loads(path.read_text())

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(data.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"{path.name}: panel {p.get('title')!r}", t["expr"]
    for var in data.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*", q, re.S)
        if m:
            yield f"{path.name}: variable {var.get('name')}", m.group(1)
        elif q.startswith("query_result("):
            yield f"{path.name}: variable {var.get('name')}", q[len("query_result("):-1]


def pending(path):
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(line)
    return names


def main(argv):
    root = Path(argv[0] if argv else ".").resolve()
    rules = root / "deploy/prometheus/alerts.yaml"
    dashboard = root / "deploy/grafana/offers.json"
    pending_file = root / "deploy/prometheus/pending-metrics.txt"

    code = exported(root)
    if not code:
        print("metrics: FAILED: no counter!/gauge!/histogram! call found in the Rust sources")
        return 1
    allowed = {}
    for name, kinds in code.items():
        for exposed in exposed_names(name, kinds):
            allowed[exposed] = "code"
    waiting = pending(pending_file)
    for name in waiting:
        for exposed in exposed_names(name, {"counter", "histogram"}):
            allowed.setdefault(exposed, "pending")

    problems, used = [], {}
    literals = string_literals(root)
    values_checked = 0
    sources = list(rule_exprs(rules)) + list(dashboard_exprs(dashboard))
    for where, expr in sources:
        try:
            names = metric_names(expr)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        for name in names:
            used.setdefault(name, set()).add(where)
        for label, value in label_values(expr):
            values_checked += 1
            if value not in literals:
                problems.append(f"{where}: {label}=\"{value}\" is a value the code never writes")

    unknown = sorted(n for n in used if n not in allowed and n not in PROMETHEUS_OWN)
    for name in unknown:
        problems.append(f"{name} is not exported by the code nor listed in {pending_file.name} "
                        f"(used by {'; '.join(sorted(used[name]))})")
    warnings = []
    for name in waiting:
        if name in code:
            warnings.append(f"{name} is exported by the code now: delete it from {pending_file.name}")
        if not any(n in used for n in exposed_names(name, {"counter", "histogram"})):
            warnings.append(f"{name} in {pending_file.name} is used by neither the rules nor the dashboard")
    for w in warnings:
        print(f"metrics: warning: {w}")
    from_code = sum(1 for n in used if allowed.get(n) == "code")
    from_pending = sum(1 for n in used if allowed.get(n) == "pending")
    own = sum(1 for n in used if n in PROMETHEUS_OWN)
    return finish("metrics", problems, f"{len(used)} names used by {len(sources)} expressions: {from_code} exported "
                  f"by the code ({len(code)} base names found), {from_pending} pending, {own} Prometheus' own, "
                  f"{len(unknown)} unknown, {len(warnings)} warnings; {values_checked} label values, each one the code "
                  f"writes")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
