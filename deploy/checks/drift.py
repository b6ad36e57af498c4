#!/usr/bin/env python3
"""Holds the chart against the code: what `offers roles` says each role is
(its listeners and their default ports, its probes, the settings it cannot
run without) against the Deployments of `helm template` renders.

Checks:
- values.yaml has a `roles.<role>` entry for every role of the code and no
  other, and the full render (every role enabled) has a Deployment for each;
- each role Deployment runs `serve <role>`, declares exactly the container
  ports of the role's listeners on the ports the pod's configuration binds
  them to (the code's defaults unless OFFERS_*_ADDR says otherwise), probes
  the code's liveness and readiness paths on the `http` port;
- every setting the role requires reaches its container (one key of each
  group, as an environment variable of its own, a `_FILE` twin, or from
  the ConfigMap it loads).

Prints one summary line; exits non-zero on any drift.

Usage: deploy/checks/drift.py ROLES.json VALUES.yaml FULL_RENDER.yaml [RENDER.yaml ...]
"""

import json
import sys

import yaml
from report import finish

COMPONENT = "app.kubernetes.io/component"
LISTEN_ADDRS = {"http": "OFFERS_HTTP_ADDR", "grpc": "OFFERS_GRPC_ADDR", "grpc-internal": "OFFERS_INTERNAL_GRPC_ADDR"}


def env_name(key):
    return "OFFERS_" + key.upper().replace(".", "__")


def check_render(path, facts, problems, full):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    deployments = {}
    for d in docs:
        if d["kind"] == "Deployment":
            component = d["spec"]["template"]["metadata"]["labels"].get(COMPONENT)
            if component != "admin":
                deployments[component] = d
    label = path.rsplit("/", 1)[-1]
    for role in sorted(set(deployments) - set(facts)):
        problems.append(f"{label}: Deployment for {role!r}, which is no role of the code")
    if full:
        for role in sorted(set(facts) - set(deployments)):
            problems.append(f"{label}: no Deployment for the role {role!r}")
    for role, d in deployments.items():
        if role not in facts:
            continue
        fact = facts[role]
        name = d["metadata"]["name"]
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c.get("args", [])[:2] != ["serve", role]:
            problems.append(f"{label}: Deployment/{name} runs {c.get('args')}, not serve {role}")
        env = {e["name"] for e in c.get("env", [])}
        loaded = {}
        for source in c.get("envFrom", []):
            loaded.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
        given = env | set(loaded)
        expected = {}
        for listener, port in fact["listeners"]:
            addr = loaded.get(LISTEN_ADDRS[listener])
            expected[listener] = int(addr.rsplit(":", 1)[1]) if addr else port
        declared = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if declared != expected:
            problems.append(f"{label}: Deployment/{name} declares ports {declared}, the role listens on {expected}")
        probes = {
            "livenessProbe": fact["liveness"],
            "startupProbe": fact["liveness"],
            "readinessProbe": fact["readiness"],
        }
        for probe, path_ in probes.items():
            get = c.get(probe, {}).get("httpGet", {})
            if (get.get("path"), get.get("port")) != (path_, "http"):
                problems.append(f"{label}: Deployment/{name} {probe} is {get}, not {path_} on http")
        for group in fact["requires"]:
            names = [n for key in group for n in (env_name(key), env_name(key) + "_FILE")]
            if not any(n in given for n in names):
                problems.append(f"{label}: Deployment/{name} gets none of {group}, which {role} cannot run without")
    return len(deployments)


def main(argv):
    facts_file, values_file, *renders = argv
    facts = {f["role"]: f for f in json.load(open(facts_file))}
    problems = []
    values = yaml.safe_load(open(values_file))
    chart_roles = set(values.get("roles", {}))
    for role in sorted(set(facts) - chart_roles):
        problems.append(f"values.yaml: no roles.{role} for the code's role {role!r}")
    for role in sorted(chart_roles - set(facts)):
        problems.append(f"values.yaml: roles.{role} is no role of the code")
    counted = [check_render(r, facts, problems, full=(i == 0)) for i, r in enumerate(renders)]
    return finish("drift", problems, f"{len(facts)} roles in the code, {len(chart_roles)} in values.yaml, "
                  f"role Deployments per render {counted}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
