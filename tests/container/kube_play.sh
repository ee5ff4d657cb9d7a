#!/usr/bin/env bash
# deploy/k8s run by `podman kube play`: the migration Job's command, then the
# Deployment with its ConfigMaps (sagad-config pointed at the embedded
# PostgreSQL and Kafka mock), until sagad is up and its liveness probe passes;
# then the pod stops on SIGTERM with exit status 0. podman runs Deployments
# and ConfigMaps; a Job or a PodDisruptionBudget it does not run, so the Job's
# command runs as a plain container, and the PDB is only parse-checked
# (check_manifests.py). Opt-in like e2e.sh (SAGA_CONTAINER_TESTS=1).
. "$(dirname "$0")/lib.sh"

ct_test_init kp
# The tag the manifests name.
ct podman tag "${SAGA_IMAGE:-localhost/saga/sagad:dev}" localhost/saga/sagad:0.1.0
played=
ct_cleanup_more() {
  [ -z "$played" ] || ct podman kube down "$played" >/dev/null 2>&1 || true
}
ct_fresh_db

# The Job's container, as the manifest states it (command, user, and
# SAGAD_STORE_CONNINFO, here the embedded PostgreSQL's).
read -r -a job_cmd < <(python3 -c '
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]
assert "args" not in c, "migrate-job.yaml: args are not expected"
assert any(e["name"] == "SAGAD_STORE_CONNINFO" for e in c["env"]), "migrate-job.yaml: no SAGAD_STORE_CONNINFO"
print(" ".join(c["command"]))
' "$root/deploy/k8s/migrate-job.yaml")
[ "${job_cmd[*]:-}" = "/usr/bin/sagad --migrate" ] || fail "migrate-job.yaml: unexpected command ${job_cmd[*]}"
out=$(ct podman run --rm --network=host --no-healthcheck --user 65532:65532 --entrypoint "${job_cmd[0]}" \
      -e SAGAD_STORE_CONNINFO="$conninfo" localhost/saga/sagad:0.1.0 "${job_cmd[@]:1}" 2>&1) ||
  fail "the migration Job's command: $out"
grep -q 'schema up to date' <<<"$out" || fail "the migration Job's command said: $out"
echo "ok: migration Job command: $out"

# sagad-config for this machine (the shipped one names production hosts),
# and this run's topics and group; the rest of deploy/k8s as it is, but for
# one replica (the pods share the host's network here).
admin_port=$(free_port)
python3 - "$root/deploy/k8s" "$work/play.yaml" "$conninfo" "$SAGA_KAFKA_BOOTSTRAP" "$id" "$admin_port" <<'PY'
import sys, yaml
src, out, conninfo, boot, run_id, port = sys.argv[1:]
docs = []
for name in ("config.yaml", "definitions.yaml", "deployment.yaml"):
    docs += [d for d in yaml.safe_load_all(open(f"{src}/{name}")) if d]
for d in docs:
    if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "sagad-config":
        d["data"] = {"SAGAD_STORE_CONNINFO": conninfo,
                     "SAGAD_KAFKA_BOOTSTRAP_SERVERS": boot,
                     "SAGAD_GROUP_ID": f"{run_id}.sagad",
                     "SAGAD_TOPIC_INBOX": f"{run_id}.inbox",
                     "SAGAD_TOPIC_NOTIFICATIONS": f"{run_id}.notifications",
                     "SAGAD_TOPIC_DLQ": f"{run_id}.dlq",
                     "SAGAD_LOG_FORMAT": "json"}
    if d["kind"] == "Deployment":
        d["metadata"]["name"] = f"sagad-{run_id}"
        d["spec"]["replicas"] = 1
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["image"] = "localhost/" + c["image"]
            c.pop("ports", None)  # host network: nothing to map
            for e in c.get("env", []):
                if e["name"] == "SAGAD_ADMIN_LISTEN":
                    e["value"] = f"127.0.0.1:{port}"
yaml.safe_dump_all(docs, open(out, "w"), sort_keys=False)
PY
ct podman kube play --network host "$work/play.yaml" >"$work/play.log" 2>&1 ||
  fail "podman kube play: $(tail -n 5 "$work/play.log")"
played=$work/play.yaml
pod=sagad-$id-pod-0
ctr=$(ct podman ps -a --filter "pod=$pod" --format '{{.Names}}' | grep -v -- '-infra$' | head -n 1)
[ -n "$ctr" ] || fail "kube play made no sagad container in pod $pod"

deadline=$((SECONDS + 30 * scale))
until ct podman logs "$ctr" 2>&1 | grep 'loaded [0-9]* saga definitions' >/dev/null; do
  [ "$(ct podman inspect --format '{{.State.Status}}' "$ctr")" = exited ] && {
    ct podman logs "$ctr" >"$work/sagad.log" 2>&1; fail "sagad exited in the pod"; }
  [ $SECONDS -lt $deadline ] || { ct podman logs "$ctr" >"$work/sagad.log" 2>&1; fail "sagad did not start in the pod"; }
  sleep 0.2
done
ct podman logs "$ctr" >"$work/sagad.log" 2>&1
grep -q 'loaded 1 saga definitions from /etc/sagad/definitions' "$work/sagad.log" ||
  fail "sagad did not load the definitions ConfigMap"
# The Deployment's probes, asked as the kubelet would: HTTP GETs on the
# admin port (the pod shares the host's network here). Readiness waits for
# the consumer group to assign the partitions.
read -r -a probe_paths < <(python3 -c '
import sys, yaml
d = [x for x in yaml.safe_load_all(open(sys.argv[1])) if x and x["kind"] == "Deployment"][0]
c = d["spec"]["template"]["spec"]["containers"][0]
print(c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"])
' "$root/deploy/k8s/deployment.yaml")
probe_ok() {
  python3 -c '
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=5).status == 200 else 1)
except Exception:
    sys.exit(1)
' "http://127.0.0.1:$admin_port$1"
}
for path in "${probe_paths[@]}"; do
  deadline=$((SECONDS + 30 * scale))
  until probe_ok "$path"; do
    [ $SECONDS -lt $deadline ] || { ct podman logs "$ctr" >"$work/sagad.log" 2>&1; fail "the Deployment's probe GET $path did not answer 200"; }
    sleep 0.5
  done
done
user=$(ct podman inspect --format '{{.Config.User}}' "$ctr")
echo "ok: kube play runs $ctr (user $user), definitions from the ConfigMap, probes ${probe_paths[*]} answer 200"

ct podman pod stop -t 30 "$pod" >/dev/null
code=$(ct podman inspect --format '{{.State.ExitCode}}' "$ctr")
ct podman logs "$ctr" >"$work/sagad.log" 2>&1
[ "$code" = 0 ] || fail "sagad exited with status $code when the pod stopped"
grep -q '"msg":"stopped"' "$work/sagad.log" || fail "sagad did not log its stop"
echo "ok: the pod stopped on SIGTERM, sagad exit status 0"
