#!/usr/bin/env python3
"""Parse-check deploy/: every YAML file loads, every Kubernetes object has
apiVersion, kind and metadata.name, and the objects fit together (selectors
match, references resolve, containers have probes and resources, the
definitions ConfigMap holds the example definitions verbatim).
Usage: check_manifests.py DEPLOY_DIR"""
import json
import pathlib
import sys

try:
    import yaml
except ImportError:
    print("python3-yaml is missing (scripts/deps.sh installs it)")
    sys.exit(1)

errors = []


def check(cond, what):
    if not cond:
        errors.append(what)
    return cond


def containers(pod_spec):
    return pod_spec.get("containers", []) + pod_spec.get("initContainers", [])


def main():
    deploy = pathlib.Path(sys.argv[1])
    root = deploy.parent
    objs = {}
    for path in sorted((deploy / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            where = f"{path.name}"
            for key in ("apiVersion", "kind", "metadata"):
                check(key in doc, f"{where}: no {key}")
            name = doc.get("metadata", {}).get("name")
            check(name, f"{where}: no metadata.name")
            objs[(doc.get("kind"), name)] = (where, doc)
    kinds = {k for k, _ in objs}
    for want in ("Deployment", "ConfigMap", "Secret", "PodDisruptionBudget", "Job"):
        check(want in kinds, f"no {want} in deploy/k8s")

    def refs_resolve(where, pod_spec):
        for c in containers(pod_spec):
            for src in c.get("envFrom", []):
                for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if key in src:
                        check((kind, src[key]["name"]) in objs,
                              f"{where}: {kind} {src[key]['name']} not in deploy/k8s")
            for env in c.get("env", []):
                vf = env.get("valueFrom", {})
                for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    if key in vf:
                        ref = objs.get((kind, vf[key]["name"]))
                        if check(ref, f"{where}: {kind} {vf[key]['name']} not in deploy/k8s"):
                            data = {**ref[1].get("data", {}), **ref[1].get("stringData", {})}
                            check(vf[key]["key"] in data,
                                  f"{where}: {kind} {vf[key]['name']} has no key {vf[key]['key']}")
            check(c.get("resources", {}).get("requests") and c["resources"].get("limits"),
                  f"{where}: container {c.get('name')} without resource requests and limits")
            check(c.get("securityContext", {}).get("allowPrivilegeEscalation") is False,
                  f"{where}: container {c.get('name')} may escalate privileges")
        for vol in pod_spec.get("volumes", []):
            if "configMap" in vol:
                check(("ConfigMap", vol["configMap"]["name"]) in objs,
                      f"{where}: volume ConfigMap {vol['configMap']['name']} not in deploy/k8s")
        check(pod_spec.get("securityContext", {}).get("runAsNonRoot") is True,
              f"{where}: pod does not require a non-root user")

    deployments = [(w, d) for (k, _), (w, d) in objs.items() if k == "Deployment"]
    for where, d in deployments:
        sel = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        check(all(labels.get(k) == v for k, v in sel.items()),
              f"{where}: selector does not match the pod template's labels")
        pod = d["spec"]["template"]["spec"]
        refs_resolve(where, pod)
        for c in pod["containers"]:
            for probe in ("readinessProbe", "livenessProbe"):
                check(probe in c, f"{where}: container {c['name']} has no {probe}")
        for (k, _), (w, pdb) in objs.items():
            if k == "PodDisruptionBudget":
                psel = pdb["spec"]["selector"]["matchLabels"]
                check(all(labels.get(a) == b for a, b in psel.items()),
                      f"{w}: selector matches no pod of {where}")
    for (k, _), (where, job) in objs.items():
        if k == "Job":
            refs_resolve(where, job["spec"]["template"]["spec"])

    defs = objs.get(("ConfigMap", "saga-definitions"))
    if check(defs, "no ConfigMap saga-definitions"):
        data = defs[1].get("data", {})
        example = root / "examples" / "order-saga" / "definitions"
        files = sorted(example.glob("*.json"))
        check(files, f"no definitions in {example}")
        for f in files:
            if check(f.name in data, f"definitions.yaml: no {f.name}"):
                check(json.loads(data[f.name]) == json.loads(f.read_text()),
                      f"definitions.yaml: {f.name} differs from {f}")
        for name, text in data.items():
            try:
                json.loads(text)
            except ValueError as e:
                errors.append(f"definitions.yaml: {name}: not JSON: {e}")

    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    services = compose.get("services", {})
    for want in ("postgres", "kafka", "migrate", "sagad"):
        check(want in services, f"compose.yaml: no service {want}")
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            check(dep in services, f"compose.yaml: {name} depends on unknown {dep}")

    if errors:
        print("\n".join(errors))
        return 1
    print(f"deploy/: {len(objs)} Kubernetes objects and {len(services)} compose services check out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
