// validate.mjs DIR PROPS_OUT — validates every manifest under DIR (deploy/kubernetes) offline:
// each document against its Kubernetes or KEDA schema (the validators generated from the
// published OpenAPI schemas by kubernetes-models and @kubernetes-models/keda, pinned in
// package.json; types, required fields, enums, formats), then the wiring between them that
// no schema sees (service name, selectors, probes on the metrics port, the state volume at
// state.dir, the instance id from the pod name, the Secret's keys, KEDA's topic and group
// matching the properties, the replica cap). Writes the ConfigMap's streamrec.properties
// to PROPS_OUT and the container's STREAMREC_* variable names after it as "#env NAME" lines,
// for `streamrec config` to check (test_kubernetes.sh). Exit 1 with one line per problem.
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseAllDocuments } from "yaml";

const [dir, propsOut] = process.argv.slice(2);
const problems = [];
const fail = (where, msg) => problems.push(`${where}: ${msg}`);

function yamlFiles(d) {
  return readdirSync(d).sort().flatMap((f) => {
    const p = join(d, f);
    if (statSync(p).isDirectory()) return f === "node_modules" ? [] : yamlFiles(p);
    return /\.ya?ml$/.test(f) ? [p] : [];
  });
}

// apiVersion/kind -> the module exporting its model class.
function modelPath(apiVersion, kind) {
  if (apiVersion.startsWith("keda.sh/")) return `@kubernetes-models/keda/${apiVersion}/${kind}`;
  return `kubernetes-models/${apiVersion}/${kind}`;
}

const objs = []; // {file, doc}
let kustomization = null;
for (const file of yamlFiles(dir)) {
  const rel = relative(dir, file);
  for (const d of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (d.errors.length) { fail(rel, `YAML: ${d.errors[0].message}`); continue; }
    const doc = d.toJS();
    if (doc == null) continue;
    if (doc.kind === "Kustomization") { kustomization = { rel, doc }; continue; }
    if (!doc.apiVersion || !doc.kind) { fail(rel, "a document without apiVersion/kind"); continue; }
    const where = `${rel} ${doc.kind}/${doc.metadata?.name ?? "?"}`;
    let mod;
    try {
      mod = await import(modelPath(doc.apiVersion, doc.kind));
    } catch (e) {
      fail(where, `no schema for ${doc.apiVersion} ${doc.kind} (${e.code ?? e.message})`);
      continue;
    }
    try {
      new mod[doc.kind](doc).validate();
    } catch (e) {
      fail(where, `schema: ${e.message}`);
    }
    if (!doc.metadata?.name) fail(where, "metadata.name missing");
    objs.push({ rel, where, doc });
  }
}

// ---- the kustomization lists every top-level manifest, and only existing ones ----
if (!kustomization) fail("kustomization.yaml", "missing");
else {
  const listed = new Set(kustomization.doc.resources ?? []);
  for (const r of listed)
    if (!objs.some((o) => o.rel === r)) fail(kustomization.rel, `resource ${r} has no manifest`);
  for (const o of objs)
    if (!o.rel.includes("/") && !listed.has(o.rel)) fail(kustomization.rel, `${o.rel} is not listed`);
}

const find = (kind, name) => objs.find((o) => o.doc.kind === kind && (!name || o.doc.metadata.name === name));
const matches = (sel, labels) => Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);

// ---- the properties ----
const cm = find("ConfigMap");
const props = {};
let propsText = "";
if (!cm || !cm.doc.data?.["streamrec.properties"]) fail("configmap.yaml", "no streamrec.properties");
else {
  propsText = cm.doc.data["streamrec.properties"];
  for (const line of propsText.split("\n")) {
    const m = /^\s*([^#\s][^=]*?)\s*=\s*(.*)$/.exec(line);
    if (m) props[m[1]] = m[2];
  }
}

// ---- the StatefulSet and what it refers to ----
const sts = find("StatefulSet");
const envNames = [];
if (!sts) fail("statefulset.yaml", "no StatefulSet");
else {
  const w = sts.where, spec = sts.doc.spec, pod = spec.template.spec;
  const podLabels = spec.template.metadata?.labels;
  if (!matches(spec.selector.matchLabels, podLabels)) fail(w, "selector does not match the pod labels");
  const svc = find("Service", spec.serviceName);
  if (!svc) fail(w, `serviceName ${spec.serviceName} names no Service`);
  else if (svc.doc.spec.clusterIP !== "None") fail(w, `Service ${spec.serviceName} is not headless`);
  if (pod.enableServiceLinks !== false)
    fail(w, "enableServiceLinks must be false (Kubernetes would inject STREAMREC_* service variables)");
  const c = pod.containers.find((x) => x.name === "streamrec");
  if (!c) fail(w, "no container named streamrec");
  else {
    if ((c.args ?? []).join(" ") !== "run -c /etc/streamrec/streamrec.properties")
      fail(w, `args ${JSON.stringify(c.args)} are not run -c /etc/streamrec/streamrec.properties`);
    const inst = (c.env ?? []).find((e) => e.name === "STREAMREC_INSTANCE_ID");
    if (inst?.valueFrom?.fieldRef?.fieldPath !== "metadata.name")
      fail(w, "STREAMREC_INSTANCE_ID must come from the pod name (fieldRef metadata.name)");
    for (const e of c.env ?? []) {
      if (e.name.startsWith("STREAMREC_")) envNames.push(e.name);
      const ref = e.valueFrom?.secretKeyRef;
      if (ref) {
        const s = find("Secret", ref.name);
        if (!s) fail(w, `env ${e.name}: no Secret ${ref.name}`);
        else if (!(ref.key in (s.doc.stringData ?? {})) && !(ref.key in (s.doc.data ?? {})))
          fail(w, `env ${e.name}: Secret ${ref.name} has no key ${ref.key}`);
      }
    }
    const port = (c.ports ?? []).find((p) => p.name === "metrics");
    const listenPort = Number((props["metrics.listen"] ?? "").split(":").pop());
    if (!port || port.containerPort !== listenPort)
      fail(w, `container port "metrics" ${port?.containerPort} is not metrics.listen's ${listenPort}`);
    if (!/^0\.0\.0\.0:|^\[::\]:|^:/.test(props["metrics.listen"] ?? ""))
      fail("configmap.yaml", "metrics.listen must listen on all addresses for the probes and Prometheus");
    const probe = (n, path) => {
      const g = c[n]?.httpGet;
      if (!g || g.path !== path || g.port !== "metrics") fail(w, `${n} must be GET ${path} on port metrics`);
    };
    probe("livenessProbe", "/healthz");
    probe("startupProbe", "/healthz");
    probe("readinessProbe", "/readyz");
    const claims = (spec.volumeClaimTemplates ?? []).map((v) => v.metadata.name);
    const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === props["state.dir"]);
    if (!mount || !claims.includes(mount.name))
      fail(w, `state.dir ${props["state.dir"]} is not a volumeClaimTemplates volume`);
    const cfgVol = (pod.volumes ?? []).find((v) => v.configMap);
    if (!cfgVol || !find("ConfigMap", cfgVol.configMap.name)) fail(w, "the config volume names no ConfigMap");
    else if (!(c.volumeMounts ?? []).some((m) => m.name === cfgVol.name && m.mountPath === "/etc/streamrec"))
      fail(w, "the ConfigMap is not mounted at /etc/streamrec");
    const sc = pod.securityContext ?? {};
    if (!sc.runAsNonRoot || !sc.runAsUser) fail(w, "pod must run as a non-root user");
  }
  for (const s of objs.filter((o) => o.doc.kind === "Service"))
    if (!matches(s.doc.spec.selector, podLabels)) fail(s.where, "selector does not match the StatefulSet's pods");
  const pdb = find("PodDisruptionBudget");
  if (!pdb) fail("pdb.yaml", "no PodDisruptionBudget");
  else if (!matches(pdb.doc.spec.selector.matchLabels, podLabels)) fail(pdb.where, "selector does not match the pods");
}

// ---- autoscaling: the lag of the right group and topic, capped ----
const so = find("ScaledObject");
if (!so) fail("keda-scaledobject.yaml", "no ScaledObject");
else {
  const w = so.where, spec = so.doc.spec;
  if (spec.scaleTargetRef.kind !== "StatefulSet" || spec.scaleTargetRef.name !== sts?.doc.metadata.name)
    fail(w, "scaleTargetRef is not the StatefulSet");
  if (!spec.maxReplicaCount) fail(w, "maxReplicaCount (the partition count) missing");
  const t = (spec.triggers ?? []).find((x) => x.type === "kafka");
  if (!t) fail(w, "no kafka trigger");
  else {
    const m = t.metadata;
    if (m.topic !== props["input.topic"]) fail(w, `trigger topic ${m.topic} is not input.topic ${props["input.topic"]}`);
    if (m.consumerGroup !== props["kafka.group.id"]) fail(w, `consumerGroup ${m.consumerGroup} is not kafka.group.id`);
    if (m.bootstrapServers !== props["kafka.bootstrap.servers"]) fail(w, "bootstrapServers differ from the properties");
    if (m.allowIdleConsumers === "true") fail(w, "allowIdleConsumers would scale past the partition count");
  }
  const hpa = find("HorizontalPodAutoscaler");
  if (hpa && hpa.doc.spec.maxReplicas !== spec.maxReplicaCount)
    fail(hpa.where, "maxReplicas differs from the ScaledObject's maxReplicaCount (the partition count)");
}

if (propsOut) writeFileSync(propsOut, propsText + envNames.map((n) => `#env ${n}\n`).join(""));
for (const p of problems) console.log(`FAIL: ${p}`);
if (!problems.length) console.log(`PASS: ${objs.length} objects valid (${[...new Set(objs.map((o) => o.doc.kind))].join(", ")})`);
process.exit(problems.length ? 1 : 0);
