"""Structural checks of berth's delivery artifacts, run by scripts/check-deploy.sh (which also
runs the real validators: docker-compose config, kubectl kustomize, kubernetes-validate).
These assert what a schema cannot: the rules docs/deploy.md promises.

usage:
  deploy_checks.py compose BASE.yml DEV.yml      compose stack, Prometheus, Grafana
  deploy_checks.py k8s RENDERED.yaml ENV         one rendered overlay
  deploy_checks.py servicemonitor SM.yaml RENDERED.yaml
  deploy_checks.py workflows FILE...             GitHub workflow files
Prints one line per finding and exits 1 when there is any; prints a summary line otherwise.
"""

import json
import os
import re
import sys
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

import yaml

problems = []


def need(condition, message):
    if not condition:
        problems.append(message)
    return condition


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def load_all(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


# ---- compose ------------------------------------------------------------------------------

DASHBOARD_METRICS = [
    "berth_sandboxes",
    "berth_create_duration_seconds_bucket",
    "berth_pool_ready",
    "berth_errors_total",
]


def check_compose(base_path, dev_path):
    base = load_yaml(base_path)
    dev = load_yaml(dev_path)
    here = os.path.dirname(os.path.abspath(base_path))
    services = base.get("services", {})
    for name in ["berth", "postgres", "prometheus", "grafana"]:
        need(name in services, f"compose: service {name} is missing")
    for name, service in services.items():
        limits = (service.get("deploy") or {}).get("resources", {}).get("limits", {})
        need("cpus" in limits and "memory" in limits, f"compose: {name} has no cpu and memory limits")
        for port in service.get("ports", []):
            need(str(port).startswith("127.0.0.1:"), f"compose: {name} publishes {port} beyond loopback")

    berth = services.get("berth", {})
    volumes = [str(v) for v in berth.get("volumes", [])]
    need(any(v.startswith("/var/run/docker.sock:") for v in volumes), "compose: berth does not mount the Docker socket")
    need(any(":/var/lib/berth" in v for v in volumes), "compose: berth's data dir is not a volume")
    need(str(berth.get("user", "")).startswith("65532"), "compose: berth does not run as 65532")
    need(berth.get("read_only") is True, "compose: berth's root filesystem is writable")
    need("BERTH_DATABASE_URL" in (berth.get("environment") or {}), "compose: berth gets no BERTH_DATABASE_URL")
    need(
        ((berth.get("depends_on") or {}).get("postgres") or {}).get("condition") == "service_healthy",
        "compose: berth does not wait for a healthy postgres",
    )
    with open(base_path) as f:
        text = f.read()
    need("root-equivalent" in text, "compose: the Docker socket mount has no comment on what it grants")
    need("SQLite" in text, "compose: no comment that berth uses SQLite until its PostgreSQL store lands")

    postgres = services.get("postgres", {})
    need("healthcheck" in postgres, "compose: postgres has no health check")
    need(any("/var/lib/postgresql/data" in str(v) for v in postgres.get("volumes", [])), "compose: postgres data is not a volume")

    # Prometheus scrapes berth's /metrics.
    prom_mounts = [str(v) for v in services.get("prometheus", {}).get("volumes", [])]
    prom_file = next((v.split(":")[0] for v in prom_mounts if v.endswith("prometheus.yml:ro") or "prometheus.yml:" in v), None)
    if need(prom_file is not None, "compose: prometheus mounts no prometheus.yml"):
        prom = load_yaml(os.path.join(here, prom_file))
        jobs = {job["job_name"]: job for job in prom.get("scrape_configs", [])}
        job = jobs.get("berth")
        if need(job is not None, "prometheus: no berth scrape job"):
            need(job.get("metrics_path", "/metrics") == "/metrics", "prometheus: berth job does not scrape /metrics")
            targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
            need("berth:8080" in targets, "prometheus: berth job does not target berth:8080")

    # Grafana: the datasource and dashboard provisioning, the dashboard's uid and metrics.
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in services.get("grafana", {}).get("volumes", []) if str(v).startswith("./")}
    prov = os.path.join(here, mounts.get("/etc/grafana/provisioning", "missing"))
    dashboards = os.path.join(here, mounts.get("/var/lib/grafana/dashboards", "missing"))
    if need(os.path.isdir(prov), "grafana: no provisioning directory mounted"):
        ds_files = [os.path.join(prov, "datasources", f) for f in os.listdir(os.path.join(prov, "datasources"))]
        uids = {d.get("uid") for f in ds_files for d in load_yaml(f).get("datasources", []) if d.get("type") == "prometheus"}
        need(uids, "grafana: no Prometheus datasource provisioned")
        providers = [p for f in os.listdir(os.path.join(prov, "dashboards")) for p in load_yaml(os.path.join(prov, "dashboards", f)).get("providers", [])]
        need(any(p.get("options", {}).get("path") == "/var/lib/grafana/dashboards" for p in providers), "grafana: no dashboard provider for /var/lib/grafana/dashboards")
        if need(os.path.isdir(dashboards), "grafana: no dashboards directory mounted"):
            path = os.path.join(dashboards, "berth.json")
            with open(path) as f:
                dashboard = json.load(f)
            exprs = [t.get("expr", "") for p in dashboard.get("panels", []) for t in p.get("targets", [])]
            for metric in DASHBOARD_METRICS:
                need(any(metric in e for e in exprs), f"grafana: the dashboard does not chart {metric}")
            need(any('path' in e for e in exprs if "create_duration" in e), "grafana: create latency is not split by path (cold|pooled)")
            for p in dashboard.get("panels", []):
                need(p.get("datasource", {}).get("uid") in uids, f"grafana: panel '{p.get('title')}' uses an unprovisioned datasource")

    dev_berth = dev.get("services", {}).get("berth", {})
    need("build" in dev_berth, "compose dev: berth has no build section")
    return f"{len(services)} services with limits; prometheus scrapes berth:8080/metrics; dashboard charts {len(DASHBOARD_METRICS)} metrics"


# ---- kubernetes ---------------------------------------------------------------------------


def check_k8s(rendered_path, env):
    docs = load_all(rendered_path)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in ["Deployment", "Service", "ServiceAccount", "Role", "RoleBinding", "Secret", "ConfigMap", "PodDisruptionBudget"]:
        need(kind in by_kind, f"{env}: no {kind}")
    need("ServiceMonitor" not in by_kind, f"{env}: the ServiceMonitor must stay optional (deploy/k8s/monitoring)")
    if problems:
        return ""

    deployment = by_kind["Deployment"][0]
    ns = deployment["metadata"].get("namespace")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    labels = spec["template"]["metadata"]["labels"]
    need(spec.get("replicas", 1) >= 1, f"{env}: no replicas")
    need(spec.get("strategy", {}).get("type") == "RollingUpdate", f"{env}: not a RollingUpdate")
    need(spec["strategy"].get("rollingUpdate", {}).get("maxUnavailable") == 0, f"{env}: a rollout may take the last ready pod away")
    need(pod.get("terminationGracePeriodSeconds", 30) >= 25, f"{env}: terminationGracePeriodSeconds shorter than berth's 20 s grace + margin")
    need(pod.get("serviceAccountName") == "berth", f"{env}: pod does not use the berth ServiceAccount")

    psc = pod.get("securityContext", {})
    csc = container.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65532 and psc.get("runAsGroup") == 65532, f"{env}: pod is not non-root 65532:65532")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{env}: no RuntimeDefault seccomp profile")
    need(csc.get("readOnlyRootFilesystem") is True, f"{env}: root filesystem is writable")
    need(csc.get("allowPrivilegeEscalation") is False, f"{env}: privilege escalation allowed")
    need(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{env}: capabilities not all dropped")
    need(not csc.get("privileged", False), f"{env}: privileged container")

    res = container.get("resources", {})
    for part in ["requests", "limits"]:
        need("cpu" in res.get(part, {}) and "memory" in res.get(part, {}), f"{env}: no cpu/memory {part}")
    probes = {p: container.get(p, {}).get("httpGet", {}) for p in ["livenessProbe", "readinessProbe", "startupProbe"]}
    need(probes["livenessProbe"].get("path") == "/healthz", f"{env}: liveness is not /healthz")
    need(probes["readinessProbe"].get("path") == "/readyz", f"{env}: readiness is not /readyz")
    need(probes["startupProbe"].get("path") in ("/healthz", "/readyz"), f"{env}: no startup probe")
    port_names = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for name, probe in probes.items():
        need(probe.get("port") in port_names or probe.get("port") in port_names.values(), f"{env}: {name} names an unknown port")
    need(container.get("args", [])[:1] == ["serve"], f"{env}: container does not run `serve`")

    # Volumes: the ConfigMap with berth.toml, an emptyDir for data_dir, a writable /tmp.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    configmaps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    config_path = next((a for a in container.get("args", []) if a.endswith(".toml")), None)
    config_dir = os.path.dirname(config_path or "")
    cm_volume = volumes.get(mounts.get(config_dir, ""), {})
    cm_name = cm_volume.get("configMap", {}).get("name")
    if need(cm_name in configmaps, f"{env}: --config {config_path} is not mounted from a rendered ConfigMap"):
        settings = tomllib.loads(configmaps[cm_name]["data"][os.path.basename(config_path)])
        for key in ["listen", "data_dir", "log"]:
            need(key in settings, f"{env}: berth.toml has no {key}")
        need(str(settings.get("listen", "")).startswith("0.0.0.0:"), f"{env}: berth.toml listens on {settings.get('listen')}, not all interfaces")
        need("cluster" in settings, f"{env}: berth.toml fixes no cluster (each new pod would start a new one)")
        data_dir = settings.get("data_dir")
        need("emptyDir" in volumes.get(mounts.get(data_dir, ""), {}), f"{env}: data_dir {data_dir} is not a writable emptyDir")
    need("emptyDir" in volumes.get(mounts.get("/tmp", ""), {}), f"{env}: /tmp is not writable")
    env_vars = {e["name"]: e for e in container.get("env", [])}
    ref = env_vars.get("BERTH_DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef", {})
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    need(ref.get("name") in secrets, f"{env}: BERTH_DATABASE_URL does not come from a rendered Secret")
    need(ref.get("optional") is True, f"{env}: the database URL is not optional (berth falls back to SQLite)")
    secret = secrets.get(ref.get("name"), {})
    need(not secret.get("data") and not secret.get("stringData"), f"{env}: the Secret carries a value (apply would overwrite the real one)")

    # Service and PDB select exactly the pods.
    service = by_kind["Service"][0]
    selector = service["spec"]["selector"]
    need(all(labels.get(k) == v for k, v in selector.items()), f"{env}: the Service selects no berth pod")
    need(any(p.get("targetPort") in port_names or p.get("targetPort") in port_names.values() for p in service["spec"]["ports"]), f"{env}: the Service targets no container port")
    pdb = by_kind["PodDisruptionBudget"][0]
    pdb_sel = pdb["spec"]["selector"]["matchLabels"]
    need(all(labels.get(k) == v for k, v in pdb_sel.items()), f"{env}: the PodDisruptionBudget selects no berth pod")
    need(spec["selector"]["matchLabels"].items() <= labels.items(), f"{env}: the Deployment selector does not match its pods")

    # RBAC: pods, pods/exec, pods/log, services in the sandbox namespace, bound to berth's SA.
    role = by_kind["Role"][0]
    sandbox_ns = role["metadata"].get("namespace")
    need(sandbox_ns and sandbox_ns != ns, f"{env}: the Role is not in a separate sandbox namespace")
    resources = {r for rule in role["rules"] for r in rule.get("resources", [])}
    need({"pods", "pods/exec", "pods/log", "services"} <= resources, f"{env}: the Role lacks {sorted({'pods', 'pods/exec', 'pods/log', 'services'} - resources)}")
    need("secrets" not in resources, f"{env}: the Role grants secrets")
    binding = by_kind["RoleBinding"][0]
    need(binding["metadata"].get("namespace") == sandbox_ns and binding["roleRef"]["name"] == role["metadata"]["name"], f"{env}: the RoleBinding does not bind the Role")
    need({"kind": "ServiceAccount", "name": "berth", "namespace": ns} in binding["subjects"], f"{env}: the RoleBinding does not name berth's ServiceAccount in {ns}")
    need(by_kind["ServiceAccount"][0]["metadata"].get("namespace") == ns, f"{env}: the ServiceAccount is not in {ns}")
    for doc in docs:
        need(doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"), f"{env}: cluster-wide RBAC ({doc['kind']})")
    return (
        f"{len(docs)} objects; {spec.get('replicas')} replica(s) of {container['image']} in {ns}, "
        f"sandboxes in {sandbox_ns}"
    )


def check_servicemonitor(sm_path, rendered_path):
    monitors = [d for d in load_all(sm_path) if d["kind"] == "ServiceMonitor"]
    docs = load_all(rendered_path)
    if not need(len(monitors) == 1, "monitoring: expected one ServiceMonitor"):
        return ""
    sm = monitors[0]
    service = next(d for d in docs if d["kind"] == "Service")
    need(sm["apiVersion"] == "monitoring.coreos.com/v1", "monitoring: not monitoring.coreos.com/v1")
    need(service["metadata"]["namespace"] in sm["spec"].get("namespaceSelector", {}).get("matchNames", []), "monitoring: does not look in berth's namespace")
    selector = sm["spec"]["selector"]["matchLabels"]
    need(all(service["metadata"].get("labels", {}).get(k) == v for k, v in selector.items()), "monitoring: selects no berth Service")
    ports = {p.get("name") for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        need(endpoint.get("port") in ports, f"monitoring: endpoint port {endpoint.get('port')} is not a Service port")
        need(endpoint.get("path") == "/metrics", "monitoring: does not scrape /metrics")
    return "ServiceMonitor selects the berth Service's http port, /metrics"


# ---- workflows ----------------------------------------------------------------------------


def check_workflows(paths):
    root = os.getcwd()
    summary = []
    for path in paths:
        wf = load_yaml(path)
        name = os.path.basename(path)
        # YAML 1.1 reads the key `on` as True.
        triggers = wf.get("on", wf.get(True))
        need(triggers, f"{name}: no triggers (on:)")
        jobs = wf.get("jobs", {})
        need(jobs, f"{name}: no jobs")
        for job_name, job in jobs.items():
            need("runs-on" in job, f"{name}: job {job_name} has no runs-on")
            steps = job.get("steps", [])
            need(steps, f"{name}: job {job_name} has no steps")
            for step in steps:
                need(("uses" in step) != ("run" in step), f"{name}: a step of {job_name} needs exactly one of uses/run")
                for script in re.findall(r"(?:^|\s)((?:scripts|\.ci)/[\w./-]+)", step.get("run", "")):
                    need(os.path.isfile(os.path.join(root, script)), f"{name}: {job_name} runs {script}, which does not exist")
        summary.append(f"{name}: {len(jobs)} job(s)")
    return "; ".join(summary)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    command, args = sys.argv[1], sys.argv[2:]
    try:
        if command == "compose":
            summary = check_compose(*args)
        elif command == "k8s":
            summary = check_k8s(*args)
        elif command == "servicemonitor":
            summary = check_servicemonitor(*args)
        elif command == "workflows":
            summary = check_workflows(args)
        else:
            print(__doc__)
            return 2
    except (KeyError, IndexError, TypeError, AttributeError, StopIteration, OSError, yaml.YAMLError, ValueError) as error:
        problems.append(f"{command}: unexpected structure: {type(error).__name__}: {error}")
        summary = ""
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
