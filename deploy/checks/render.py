#!/usr/bin/env python3
"""Checks one `helm template` render of helm/offers beyond schema validation,
and splits it for the other tools.

Checks:
- names fit Kubernetes' limits; no two objects share kind and name;
- every Service, PodDisruptionBudget, HorizontalPodAutoscaler and the
  PodMonitor select or target pods or Deployments that exist in the render;
- every role Deployment has startup, liveness and readiness probes (readiness
  timeout >= 3 s: /readyz answers within 2 s), spreads its pods, and leaves
  `replicas` out when an autoscaler owns it;
- every gRPC role has a ClusterIP Service and a headless one
  (`<name>-headless`, clusterIP None), and the ConfigMap's upstream URLs name
  Services of the render on the right ports, `https://` exactly when the
  ConfigMap configures TLS;
- no pod gets a setting the binary no longer has (it refuses unknown keys);
  the key encryption key reaches the auth pods and no other; every
  `OFFERS_*_FILE` a pod gets names a file that one of its volumes provides;
- the PrometheusRule (if rendered) holds exactly the rules of
  helm/offers/files/alerts.yaml, apart from the runbook base URL;
- the NetworkPolicies (if rendered) allow exactly the gRPC calls of the role
  graph below, and nothing reaches a gRPC port that is not in it.

Writes next to OUT_PREFIX: `.core.yaml` (objects Kubernetes' own schemas
cover), `.rules.yaml` (the PrometheusRule's spec, for promtool) when there is
one. Prints one summary line with the object counts.

Usage: deploy/checks/render.py RENDER.yaml OUT_PREFIX LABEL [REPO_ROOT]
"""

import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import yaml

GRPC_ROLES = {"auth", "catalog", "account", "activation", "partner"}
# Who calls whom, as the brief for the chart states it and the code wires it
# (the gateway's upstreams; the internal clients each role uses). A test of
# the templates, so it is written out here on purpose, not read from them.
# Every gRPC role checks access tokens, so it loads the key set (GetJwks)
# from auth's public port; the auth role reads its own listener.
PUBLIC_CALLS = {
    "gateway": {"auth", "catalog", "account", "activation", "partner"},
    "catalog": {"auth"},
    "account": {"auth"},
    "activation": {"auth"},
    "partner": {"auth"},
}
INTERNAL_CALLS = {
    "activation": {"catalog", "account"},
    "worker": {"account"},
    "partner": {"auth", "catalog", "account"},
    "notifier": {"auth"},
    "scheduler": {"account"},
    "reminders": {"account"},
    "admin": {"auth", "catalog", "account", "partner"},
    "console": {"auth", "catalog", "account", "partner"},
    "migrate": set(),
}
CRD_KINDS = {"PodMonitor", "PrometheusRule", "ServiceMonitor"}
# Settings the binary used to have: it refuses to start with any of them.
GONE_SETTINGS = {
    "OFFERS_AUTH__PUBLIC_KEY_FILE",
    "OFFERS_AUTH__PUBLIC_KEY_PEM",
    "OFFERS_GATEWAY__TRUST_FORWARDED_FOR",
}
COMPONENT = "app.kubernetes.io/component"


def matches(selector, labels):
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_templates(docs):
    """(kind/name, pod template metadata labels, pod spec) of every workload."""
    for d in docs:
        kind, spec = d["kind"], d.get("spec", {})
        if kind in ("Deployment", "Job"):
            t = spec["template"]
        elif kind == "CronJob":
            t = spec["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield f"{kind}/{d['metadata']['name']}", t["metadata"].get("labels", {}), t["spec"]


def port_allowed(rule_ports, number, name):
    if not rule_ports:
        return True
    for p in rule_ports:
        port = p.get("port")
        if port is None or port == number or port == name:
            return True
        if isinstance(port, int) and p.get("endPort") and port <= number <= p["endPort"]:
            return True
    return False


def peer_selects(peers, labels):
    """Whether a rule's from/to admits a pod of this release with these labels."""
    if not peers:
        return True
    for peer in peers:
        if "ipBlock" in peer:
            continue
        if "namespaceSelector" in peer and peer["namespaceSelector"] != {}:
            continue  # another namespace, not the release's own pods
        if "podSelector" in peer and matches(peer["podSelector"], labels):
            return True
        if "podSelector" not in peer and peer.get("namespaceSelector") == {}:
            return True
    return False


def check_settings(docs, pods, problems):
    """What each pod's environment says, against what the binary accepts and
    what the pod mounts."""
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    for name, data in configmaps.items():
        for key in sorted(GONE_SETTINGS & set(data)):
            problems.append(f"ConfigMap/{name} sets {key}, which the binary no longer accepts")
        tls = "OFFERS_TLS__CERT_FILE" in data
        if tls != ("OFFERS_TLS__KEY_FILE" in data) or ("OFFERS_TLS__CA_FILE" in data and not tls):
            problems.append(f"ConfigMap/{name}: OFFERS_TLS__CERT_FILE and …KEY_FILE go together, …CA_FILE needs both")
        for key, value in data.items():
            if key.startswith("OFFERS_UPSTREAM__") and urlparse(value).scheme != ("https" if tls else "http"):
                problems.append(f"ConfigMap/{name}: {key}={value} should be {'https' if tls else 'http'}:// (TLS {'on' if tls else 'off'})")
    kek_holders = set()
    for workload, labels, spec in pods:
        comp = labels.get(COMPONENT)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            env = {}
            for source in c.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref is not None:
                    env.update(configmaps.get(ref, {}))
            for e in c.get("env", []):
                env[e["name"]] = e.get("value", e.get("valueFrom"))
            for key in sorted(GONE_SETTINGS & set(env)):
                problems.append(f"{workload} sets {key}, which the binary no longer accepts")
            if "OFFERS_AUTH__KEY_ENCRYPTION_KEY" in env:
                kek_holders.add(comp)
                ref = (env["OFFERS_AUTH__KEY_ENCRYPTION_KEY"] or {}).get("secretKeyRef", {})
                if ref.get("optional"):
                    problems.append(f"{workload}: the key encryption key must not be optional")
            mounts = [(m["mountPath"].rstrip("/") + "/", volumes.get(m["name"])) for m in c.get("volumeMounts", [])]
            for key, value in env.items():
                if not (key.endswith("_FILE") and isinstance(value, str) and value.startswith("/")):
                    continue
                provided = False
                for prefix, volume in mounts:
                    if volume is None or not value.startswith(prefix):
                        continue
                    source = volume.get("secret") or volume.get("configMap") or {}
                    items = source.get("items")
                    provided = items is None or value[len(prefix):] in {i["path"] for i in items}
                    if provided and source.get("optional"):
                        problems.append(f"{workload}: {key}={value} comes from an optional volume")
                    break
                if not provided:
                    problems.append(f"{workload}: {key}={value}, but no volume of the pod provides that file")
    if pods and kek_holders != ({"auth"} & {labels.get(COMPONENT) for _, labels, _ in pods}):
        problems.append(f"the key encryption key reaches {sorted(kek_holders)}, not the auth pods alone")


def check_network(docs, pods, problems):
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    if not policies:
        return 0
    comps = {}
    for _, labels, spec in pods:
        comp = labels.get(COMPONENT)
        ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
        comps.setdefault(comp, (labels, ports))
    for comp, (labels, _) in comps.items():
        if not any(matches(p["spec"]["podSelector"], labels) for p in policies):
            problems.append(f"no NetworkPolicy selects the {comp} pods")

    def allowed(direction, src, dst, number, name):
        own = src if direction == "egress" else dst
        other = dst if direction == "egress" else src
        selecting = [p for p in policies if matches(p["spec"]["podSelector"], comps[own][0])]
        types = [p for p in selecting if direction.capitalize() in p["spec"].get("policyTypes", [])]
        if not types:
            return True  # not isolated in that direction
        key, peers = ("egress", "to") if direction == "egress" else ("ingress", "from")
        for p in types:
            for rule in p["spec"].get(key) or []:
                if port_allowed(rule.get("ports"), number, name) and peer_selects(rule.get(peers), comps[other][0]):
                    return True
        return False

    edges = 0
    for dst in sorted(c for c in comps if c in GRPC_ROLES):
        for name, calls in (("grpc", PUBLIC_CALLS), ("grpc-internal", INTERNAL_CALLS)):
            number = comps[dst][1].get(name)
            if number is None:
                problems.append(f"{dst} pods have no {name} port")
                continue
            for src in sorted(comps):
                want = dst in calls.get(src, set())
                got = allowed("egress", src, dst, number, name) and allowed("ingress", src, dst, number, name)
                edges += got
                if want and not got:
                    problems.append(f"NetworkPolicies block {src} -> {dst}:{name}, which the role graph needs")
                if got and not want:
                    problems.append(f"NetworkPolicies allow {src} -> {dst}:{name}, which the role graph does not have")
    return edges


def main(argv):
    render, prefix, label = Path(argv[0]), Path(argv[1]), argv[2]
    root = Path(argv[3] if len(argv) > 3 else ".").resolve()
    docs = [d for d in yaml.safe_load_all(render.read_text()) if d]
    problems = []

    seen = Counter((d["kind"], d["metadata"]["name"]) for d in docs)
    for (kind, name), n in seen.items():
        if n > 1:
            problems.append(f"{kind}/{name} rendered {n} times")
        limit = 63 if kind in ("Service", "CronJob") else 253
        if kind == "CronJob":
            limit = 52
        if len(name) > limit:
            problems.append(f"{kind}/{name}: name longer than {limit}")

    pods = list(pod_templates(docs))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    hpas = {d["spec"]["scaleTargetRef"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}

    for kind in ("Service", "PodDisruptionBudget"):
        for d in (x for x in docs if x["kind"] == kind):
            sel = d["spec"]["selector"]
            sel = sel if "matchLabels" in sel or "matchExpressions" in sel else {"matchLabels": sel}
            if not any(matches(sel, labels) for _, labels, _ in pods):
                problems.append(f"{kind}/{d['metadata']['name']} selects no pod of the render")
    for target in hpas:
        if target not in deployments:
            problems.append(f"HorizontalPodAutoscaler targets Deployment/{target}, which is not rendered")

    roles = {}
    for name, d in deployments.items():
        t = d["spec"]["template"]
        comp = t["metadata"]["labels"].get(COMPONENT)
        c = t["spec"]["containers"][0]
        if comp == "admin":
            continue
        roles[comp] = name
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"Deployment/{name}: no {probe}")
        if c.get("readinessProbe", {}).get("timeoutSeconds", 1) < 3:
            problems.append(f"Deployment/{name}: readiness timeout below 3 s (/readyz may take 2 s)")
        if not t["spec"].get("topologySpreadConstraints"):
            problems.append(f"Deployment/{name}: no topologySpreadConstraints")
        if name in hpas and "replicas" in d["spec"]:
            problems.append(f"Deployment/{name}: sets replicas although an autoscaler owns them")
        if name not in hpas and "replicas" not in d["spec"]:
            problems.append(f"Deployment/{name}: no replicas and no autoscaler")
        ports = {p["name"] for p in c.get("ports", [])}
        if comp in GRPC_ROLES:
            for svc, headless in ((name, False), (name + "-headless", True)):
                s = services.get(svc)
                if not s:
                    problems.append(f"gRPC role {comp}: no Service/{svc}")
                    continue
                if (s["spec"].get("clusterIP") == "None") != headless:
                    problems.append(f"Service/{svc}: clusterIP should {'' if headless else 'not '}be None")
                if not {"grpc", "grpc-internal"} <= {p["name"] for p in s["spec"]["ports"]}:
                    problems.append(f"Service/{svc}: lacks the grpc and grpc-internal ports")
            if not {"http", "grpc", "grpc-internal"} <= ports:
                problems.append(f"Deployment/{name}: lacks the http, grpc and grpc-internal ports")
        elif "grpc" in ports:
            problems.append(f"Deployment/{name}: {comp} does not serve gRPC but declares the port")

    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        for key, value in cm.get("data", {}).items():
            if not key.startswith("OFFERS_UPSTREAM__"):
                continue
            url = urlparse(value)
            svc = services.get(url.hostname)
            if svc is None:
                problems.append(f"{key}={value}: no such Service in the render")
            elif url.port not in {p["port"] for p in svc["spec"]["ports"]}:
                problems.append(f"{key}={value}: Service/{url.hostname} has no port {url.port}")

    for pm in (d for d in docs if d["kind"] == "PodMonitor"):
        selected = {labels.get(COMPONENT) for _, labels, _ in pods if matches(pm["spec"]["selector"], labels)}
        if selected != set(roles):
            problems.append(f"PodMonitor selects {sorted(selected)}, not the roles {sorted(roles)}")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            for comp in roles:
                c = deployments[roles[comp]]["spec"]["template"]["spec"]["containers"][0]
                if ep["port"] not in {p["name"] for p in c.get("ports", [])}:
                    problems.append(f"PodMonitor scrapes port {ep['port']}, which {comp} lacks")

    rules_out = None
    for pr in (d for d in docs if d["kind"] == "PrometheusRule"):
        source = yaml.safe_load((root / "helm/offers/files/alerts.yaml").read_text())

        def normal(doc):
            for g in doc["groups"]:
                for r in g["rules"]:
                    url = r.get("annotations", {}).get("runbook_url")
                    if url:
                        r["annotations"]["runbook_url"] = "#" + url.split("#", 1)[-1]
            return doc

        if normal(yaml.safe_load(yaml.safe_dump(pr["spec"]))) != normal(source):
            problems.append("the PrometheusRule's rules differ from helm/offers/files/alerts.yaml")
        rules_out = prefix.with_name(prefix.name + ".rules.yaml")
        rules_out.write_text(yaml.safe_dump(pr["spec"], sort_keys=False))

    check_settings(docs, pods, problems)
    edges = check_network(docs, pods, problems)

    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    prefix.with_name(prefix.name + ".core.yaml").write_text(yaml.safe_dump_all(core, sort_keys=False))

    for p in problems:
        print(f"render {label}: FAILED: {p}")
    counts = Counter(d["kind"] for d in docs)
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    policies = f", {edges} gRPC edges allowed by NetworkPolicies" if counts.get("NetworkPolicy") else ""
    print(f"render {label}: {len(docs)} objects ({kinds}){policies}; {len(problems)} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
