// Reading and checking the Kubernetes manifests under deploy/k8s/ without a cluster:
//   schemaProblems      the official API schemas (kubernetes-models, generated from the
//                       Kubernetes OpenAPI spec), plus unknown fields, which the API server
//                       refuses (kubectl's default --validate=strict) but the schemas allow
//   referenceProblems   what the API server or the kubelet would only find at apply or run
//                       time: selectors that select nothing, missing Secrets and keys,
//                       $(VAR) references to nothing, named ports that do not exist
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';

export const REPO_DIR = fileURLToPath(new URL('../../../', import.meta.url));
export const K8S_DIR = join(REPO_DIR, 'deploy/k8s');

/** A Kubernetes object as parsed from YAML: only the envelope is typed. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export interface Manifest {
  file: string;
  object: K8sObject;
}

type Json = Record<string, unknown>;

/** Every kind the manifests may use, with its schema. A new kind must be added here. */
const MODELS: Record<string, { prototype: { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'networking.k8s.io/v1/Ingress': Ingress,
};

const KUSTOMIZATION = 'kustomize.config.k8s.io/v1beta1/Kustomization';

export function yamlFiles(dir = K8S_DIR): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((file) => /\.ya?ml$/.test(file))
    .sort();
}

/** Every YAML document of every file under deploy/k8s/, the Kustomization apart. */
export function loadAll(dir = K8S_DIR): { manifests: Manifest[]; kustomization?: Json } {
  const manifests: Manifest[] = [];
  let kustomization: Json | undefined;
  for (const file of yamlFiles(dir)) {
    for (const object of parseDocuments(readFileSync(join(dir, file), 'utf8'), file)) {
      if (`${object.apiVersion}/${object.kind}` === KUSTOMIZATION) kustomization = object;
      else manifests.push({ file, object });
    }
  }
  return { manifests, ...(kustomization ? { kustomization } : {}) };
}

/**
 * The documents of one file, read as kubectl reads them: YAML 1.1, so `0440` is octal and an
 * unquoted `yes` a boolean, as they are to the API server. Syntax errors throw.
 */
export function parseDocuments(text: string, file = '(text)'): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text, { version: '1.1' })) {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) throw new Error(`${file}: ${problems.map((p) => p.message).join('; ')}`);
    const object = doc.toJS() as K8sObject | null;
    if (object !== null) objects.push(object); // null: an empty document, e.g. after a trailing ---
  }
  return objects;
}

export const nameOf = (object: K8sObject) => `${object.kind} ${object.metadata?.name}`;

/**
 * The schema check of one object: `<path> <message>` per problem, none when valid.
 *
 * The Kubernetes schemas do not forbid unknown fields (the API server does, since 1.27, in
 * kubectl's default strict mode), so a typo such as `readinesProbe` would pass them. To
 * find those, the validator runs on a proxy that records which fields it looks at: in an
 * object whose schema lists properties, the generated validator reads every one of them,
 * so a field it never read is one the schema does not know. Objects the validator never
 * looks into (free-form ones) are not judged.
 */
export function schemaProblems(object: K8sObject): string[] {
  const model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!model) return [`${object.apiVersion} ${object.kind}: no schema here (add it to MODELS in manifests.ts)`];
  const tracker = new FieldTracker();
  const problems: string[] = [];
  try {
    model.prototype.validate.call(tracker.wrap(object));
  } catch (error) {
    const errors = (error as { errors?: { instancePath: string; message?: string }[] }).errors;
    if (!errors) throw error;
    problems.push(...errors.map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`));
  }
  problems.push(...tracker.unknownFields(object).map((path) => `${path} is not a field of this object (unknown field)`));
  return problems;
}

class FieldTracker {
  private readonly seen = new WeakMap<object, Set<string>>();

  wrap<T>(value: T): T {
    if (value === null || typeof value !== 'object') return value;
    const target = value as object;
    const note = (key: string | symbol) => {
      if (typeof key !== 'string') return;
      let keys = this.seen.get(target);
      if (!keys) this.seen.set(target, (keys = new Set()));
      keys.add(key);
    };
    return new Proxy(target, {
      get: (t, key, receiver) => {
        note(key);
        return this.wrap(Reflect.get(t, key, receiver));
      },
      has: (t, key) => {
        note(key);
        return Reflect.has(t, key);
      },
      getOwnPropertyDescriptor: (t, key) => {
        note(key);
        return Reflect.getOwnPropertyDescriptor(t, key);
      },
      // Enumerating keys (maps such as labels, additionalProperties) accepts every one.
      ownKeys: (t) => {
        const keys = Reflect.ownKeys(t);
        keys.forEach(note);
        if (keys.length === 0) this.seen.set(t, this.seen.get(t) ?? new Set());
        return keys;
      },
    }) as T;
  }

  unknownFields(value: unknown, path = ''): string[] {
    if (value === null || typeof value !== 'object') return [];
    const found: string[] = [];
    const seen = this.seen.get(value);
    for (const [key, child] of Object.entries(value)) {
      const childPath = `${path}/${key}`;
      if (!Array.isArray(value) && seen && !seen.has(key)) found.push(childPath);
      else found.push(...this.unknownFields(child, childPath));
    }
    return found;
  }
}

// --- cross-references -----------------------------------------------------------------

export interface PodTemplate {
  owner: K8sObject;
  labels: Record<string, string>;
  spec: Json;
  containers: Json[];
}

const asArray = (value: unknown): Json[] => (Array.isArray(value) ? (value as Json[]) : []);
const asObject = (value: unknown): Json => (value && typeof value === 'object' ? (value as Json) : {});

export function podTemplates(manifests: Manifest[]): PodTemplate[] {
  return manifests
    .filter(({ object }) => object.kind === 'Deployment' || object.kind === 'StatefulSet')
    .map(({ object }) => {
      const template = asObject(asObject(object.spec).template);
      const spec = asObject(template.spec);
      return {
        owner: object,
        labels: (asObject(template.metadata).labels ?? {}) as Record<string, string>,
        spec,
        containers: [...asArray(spec.initContainers), ...asArray(spec.containers)],
      };
    });
}

interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const byLabel = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
  const byExpression = (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    switch (operator) {
      case 'In': return key in labels && values.includes(labels[key]!);
      case 'NotIn': return !(key in labels) || !values.includes(labels[key]!);
      case 'Exists': return key in labels;
      case 'DoesNotExist': return !(key in labels);
      default: return false;
    }
  });
  return byLabel && byExpression;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL_1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;

/** Everything that points at something else, checked against what deploy/k8s defines. */
export function referenceProblems(manifests: Manifest[]): string[] {
  const problems: string[] = [];
  const objects = manifests.map((m) => m.object);
  const find = (kind: string, name: string, namespace?: string) =>
    objects.find((o) => o.kind === kind && o.metadata.name === name && (kind === 'Namespace' || o.metadata.namespace === namespace));
  const dataKeys = (object: K8sObject | undefined) =>
    new Set([...Object.keys(asObject(object?.data)), ...Object.keys(asObject(object?.stringData))]);
  const templates = podTemplates(manifests);

  const ids = new Set<string>();
  for (const object of objects) {
    const { name, namespace } = object.metadata;
    const id = `${object.kind}/${namespace ?? ''}/${name}`;
    if (ids.has(id)) problems.push(`${nameOf(object)}: defined twice`);
    ids.add(id);
    if (!DNS_SUBDOMAIN.test(name) || name.length > 253) problems.push(`${nameOf(object)}: name is not a DNS subdomain`);
    if (object.kind === 'Service' && (!DNS_LABEL_1035.test(name) || name.length > 63)) {
      problems.push(`${nameOf(object)}: a Service name must be a DNS label (RFC 1035)`);
    }
    if (object.kind !== 'Namespace' && !find('Namespace', namespace ?? '')) {
      problems.push(`${nameOf(object)}: namespace ${namespace ?? '(none)'} is not defined in deploy/k8s`);
    }
  }

  for (const { owner, labels, spec, containers } of templates) {
    const where = nameOf(owner);
    const namespace = owner.metadata.namespace;
    const ownerSpec = asObject(owner.spec);
    if (!selects(ownerSpec.selector as LabelSelector, labels)) problems.push(`${where}: selector does not match its pod labels`);
    if (owner.kind === 'StatefulSet') {
      const service = find('Service', String(ownerSpec.serviceName), namespace);
      if (!service) problems.push(`${where}: serviceName ${String(ownerSpec.serviceName)} is not a Service here`);
      else if (asObject(service.spec).clusterIP !== 'None') problems.push(`${where}: serviceName ${service.metadata.name} is not headless`);
    }

    const volumes = new Map(asArray(spec.volumes).map((v) => [String(v.name), v]));
    for (const claim of asArray(ownerSpec.volumeClaimTemplates)) volumes.set(String(asObject(claim.metadata).name), claim);
    for (const volume of asArray(spec.volumes)) {
      const secret = asObject(volume.secret);
      const configMap = asObject(volume.configMap);
      const [kind, name, items] = secret.secretName
        ? ['Secret', String(secret.secretName), secret.items]
        : configMap.name ? ['ConfigMap', String(configMap.name), configMap.items] : [undefined, '', undefined];
      if (!kind) continue;
      const target = find(kind, name, namespace);
      if (!target) problems.push(`${where}: volume ${String(volume.name)} uses ${kind} ${name}, not defined in deploy/k8s`);
      for (const item of asArray(items)) {
        if (target && !dataKeys(target).has(String(item.key))) problems.push(`${where}: volume ${String(volume.name)} wants key ${String(item.key)}, not in ${kind} ${name}`);
      }
    }

    for (const container of containers) {
      const at = `${where} container ${String(container.name)}`;
      const defined = new Set<string>();
      for (const source of asArray(container.envFrom)) {
        const ref = asObject(source.configMapRef ?? source.secretRef);
        const kind = source.configMapRef ? 'ConfigMap' : 'Secret';
        const target = find(kind, String(ref.name), namespace);
        if (!target) problems.push(`${at}: envFrom ${kind} ${String(ref.name)} is not defined in deploy/k8s`);
        dataKeys(target).forEach((key) => defined.add(key));
      }
      for (const variable of asArray(container.env)) {
        const name = String(variable.name);
        // Kubernetes leaves $(NAME) as it is when NAME is not defined before it: no error,
        // just a wrong value at run time.
        for (const [, ref] of String(variable.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) {
          if (!defined.has(ref!)) problems.push(`${at}: env ${name} refers to $(${ref}), not defined before it`);
        }
        const from = asObject(variable.valueFrom);
        for (const [field, kind] of [['secretKeyRef', 'Secret'], ['configMapKeyRef', 'ConfigMap']] as const) {
          const ref = from[field] as { name: string; key: string } | undefined;
          if (!ref) continue;
          const target = find(kind, ref.name, namespace);
          if (!target) problems.push(`${at}: env ${name} uses ${kind} ${ref.name}, not defined in deploy/k8s`);
          else if (!dataKeys(target).has(ref.key)) problems.push(`${at}: env ${name} wants key ${ref.key}, not in ${kind} ${ref.name}`);
        }
        defined.add(name);
      }
      for (const mount of asArray(container.volumeMounts)) {
        if (!volumes.has(String(mount.name))) problems.push(`${at}: mounts volume ${String(mount.name)}, which the pod does not have`);
      }
      const portNames = new Set(asArray(container.ports).map((p) => String(p.name)));
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
        const handler = asObject(container[probe]);
        const port = asObject(handler.httpGet ?? handler.tcpSocket).port;
        if (typeof port === 'string' && !portNames.has(port)) problems.push(`${at}: ${probe} uses port ${port}, which the container does not name`);
      }
    }
  }

  const podsSelectedBy = (selector: LabelSelector | undefined, namespace?: string) =>
    templates.filter((t) => t.owner.metadata.namespace === namespace && selects(selector, t.labels));
  for (const object of objects) {
    const spec = asObject(object.spec);
    const namespace = object.metadata.namespace;
    if (object.kind === 'Service') {
      const pods = podsSelectedBy({ matchLabels: spec.selector as Record<string, string> }, namespace);
      if (pods.length === 0) problems.push(`${nameOf(object)}: selects no pods`);
      for (const port of asArray(spec.ports)) {
        if (typeof port.targetPort !== 'string') continue;
        const named = pods.every((t) => t.containers.some((c) => asArray(c.ports).some((p) => p.name === port.targetPort)));
        if (!named) problems.push(`${nameOf(object)}: targetPort ${port.targetPort} is not a port of the pods it selects`);
      }
    }
    if (object.kind === 'PodDisruptionBudget' && podsSelectedBy(spec.selector as LabelSelector, namespace).length === 0) {
      problems.push(`${nameOf(object)}: selects no pods`);
    }
    if (object.kind === 'NetworkPolicy' && podsSelectedBy(spec.podSelector as LabelSelector, namespace).length === 0) {
      problems.push(`${nameOf(object)}: applies to no pods`);
    }
    if (object.kind === 'Ingress') {
      for (const tls of asArray(spec.tls)) {
        if (!find('Secret', String(tls.secretName), namespace)) problems.push(`${nameOf(object)}: TLS Secret ${String(tls.secretName)} is not defined in deploy/k8s`);
      }
      for (const rule of asArray(spec.rules)) {
        for (const path of asArray(asObject(rule.http).paths)) {
          const backend = asObject(asObject(path.backend).service) as { name?: string; port?: { name?: string; number?: number } };
          const service = find('Service', String(backend.name), namespace);
          const portOk = asArray(asObject(service?.spec).ports).some((p) => p.name === backend.port?.name || p.port === backend.port?.number);
          if (!service || !portOk) problems.push(`${nameOf(object)}: backend ${String(backend.name)} is not a Service port defined here`);
        }
      }
    }
  }
  return problems;
}
