// deploy/k8s/ checked without a cluster: every document against the official Kubernetes
// schemas (kubernetes-models), then what the schemas cannot see: references between the
// objects, the node's own configuration rules, HAProxy's configuration against
// haproxy/haproxy.cfg, Redis against redis/entrypoint.sh. Each check is also shown to fail
// on a broken copy, so a check that passes everything would itself fail.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../app/src/config/index.js';
import { parseDuration } from '../../../app/src/lib/duration.js';
import {
  K8S_DIR,
  REPO_DIR,
  loadAll,
  nameOf,
  parseDocuments,
  podTemplates,
  referenceProblems,
  schemaProblems,
  selects,
  yamlFiles,
  type K8sObject,
  type Manifest,
} from './manifests.js';

// Loosely typed on purpose: the schemas have already checked the shapes these tests read.
type Json = Record<string, any>;

const { manifests, kustomization } = loadAll();
const objects = manifests.map((m) => m.object);

function get(kind: string, name: string): Json {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!found) throw new Error(`${kind} ${name} is not defined in deploy/k8s`);
  return found as Json;
}
const clone = <T>(value: T): T => structuredClone(value);
const container = (workload: Json, name: string): Json => workload.spec.template.spec.containers.find((c: Json) => c.name === name);
const envOf = (c: Json): Map<string, Json> => new Map((c.env ?? []).map((e: Json) => [e.name, e]));
/** The manifests with some objects swapped for (broken) copies of the same kind and name. */
const withObjects = (...replaced: Json[]): Manifest[] =>
  manifests.map((m) => {
    const copy = replaced.find((r) => r.kind === m.object.kind && r.metadata.name === m.object.metadata.name);
    return copy ? { ...m, object: copy as K8sObject } : m;
  });

const app = get('Deployment', 'app');
const appContainer = container(app, 'app');
const appConfig = get('ConfigMap', 'app-config');
const headless = get('Service', 'app');
const lb = get('Deployment', 'lb');
const haproxyConfig: string = get('ConfigMap', 'haproxy-config').data['haproxy.cfg'];
const redis = get('StatefulSet', 'redis');
const sentinel = get('StatefulSet', 'redis-sentinel');
const startScript: string = get('ConfigMap', 'redis-scripts').data['start.sh'];

describe('deploy/k8s against the Kubernetes schemas', () => {
  it('holds the objects of the layout, each kind one with a schema', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      expect.arrayContaining([
        'Namespace/keyfleet', 'Secret/keyfleet-master-key', 'Secret/keyfleet-redis', 'Secret/keyfleet-tls',
        'ConfigMap/app-config', 'Service/app', 'Deployment/app', 'PodDisruptionBudget/app',
        'ConfigMap/haproxy-config', 'Deployment/lb', 'Service/lb', 'StatefulSet/redis', 'StatefulSet/redis-sentinel',
        'Ingress/keyfleet', 'NetworkPolicy/redis',
      ]),
    );
  });

  it.each(manifests.map((m) => [`${m.file}: ${nameOf(m.object)}`, m.object] as const))('%s is valid, with no unknown field', (_, object) => {
    expect(schemaProblems(object)).toEqual([]);
  });

  describe('rejects a broken copy', () => {
    it('replicas of the wrong type', () => {
      const broken = clone(app);
      broken.spec.replicas = '3';
      expect(schemaProblems(broken as K8sObject)).toContain('/spec/replicas must be integer');
    });

    it('a Deployment without its required selector', () => {
      const broken = clone(app);
      delete broken.spec.selector;
      expect(schemaProblems(broken as K8sObject)).toContain('/spec must have required property selector');
    });

    it('an unknown field in a container (a typo the schemas alone would let through)', () => {
      const broken = clone(app);
      const c = container(broken, 'app');
      c.readinesProbe = c.readinessProbe;
      delete c.readinessProbe;
      expect(schemaProblems(broken as K8sObject)).toEqual([
        '/spec/template/spec/containers/0/readinesProbe is not a field of this object (unknown field)',
      ]);
    });

    it('a value outside its enum, and a kind with no schema here', () => {
      const broken = clone(app);
      container(broken, 'app').imagePullPolicy = 'Sometimes';
      expect(schemaProblems(broken as K8sObject)).toContain('/spec/template/spec/containers/0/imagePullPolicy must be equal to one of the allowed values');
      expect(schemaProblems({ apiVersion: 'apps/v1', kind: 'Deploymnet', metadata: { name: 'x' } })[0]).toMatch(/no schema here/);
    });

    it('an unquoted yes, which YAML 1.1 (kubectl) reads as a boolean, where a string belongs', () => {
      const [configMap] = parseDocuments('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n  FLAG: yes\n');
      expect(schemaProblems(configMap!)).toContain('/data/FLAG must be string');
    });
  });
});

describe('deploy/k8s cross-references', () => {
  it('every selector selects, every Secret, ConfigMap, key, volume, port and $(VAR) exists', () => {
    expect(referenceProblems(manifests)).toEqual([]);
  });

  it('finds each kind of broken reference', () => {
    const broken = clone(app);
    broken.spec.selector.matchLabels['app.kubernetes.io/name'] = 'ap';
    const c = container(broken, 'app');
    c.env.find((e: Json) => e.name === 'REDIS_PASSWORD').valueFrom.secretKeyRef.key = 'passwd';
    c.env.push({ name: 'WRONG', value: 'x$(UNDEFINED)y' });
    c.readinessProbe.httpGet.port = 'htp';
    broken.spec.template.spec.volumes[0].secret.secretName = 'master-key';
    const brokenService = clone(headless);
    brokenService.spec.selector['app.kubernetes.io/name'] = 'nothing';
    const problems = referenceProblems(withObjects(broken, brokenService));
    expect(problems).toEqual(
      expect.arrayContaining([
        'Deployment app: selector does not match its pod labels',
        'Deployment app container app: env REDIS_PASSWORD wants key passwd, not in Secret keyfleet-redis',
        'Deployment app container app: env WRONG refers to $(UNDEFINED), not defined before it',
        'Deployment app container app: readinessProbe uses port htp, which the container does not name',
        'Deployment app: volume master-key uses Secret master-key, not defined in deploy/k8s',
        'Service app: selects no pods',
      ]),
    );
  });

  it('kustomization.yaml applies every file but the placeholder Secrets and the Ingress alternative', () => {
    expect(kustomization).toBeDefined();
    const resources = kustomization!.resources as string[];
    for (const file of resources) expect(existsSync(join(K8S_DIR, file)), file).toBe(true);
    const manifestFiles = yamlFiles().filter((f) => f !== 'kustomization.yaml');
    expect(manifestFiles.filter((f) => !resources.includes(f)).sort()).toEqual(['ingress.yaml', 'secrets.example.yaml']);
    // The placeholders must never be applied over real Secrets.
    expect(manifests.filter((m) => m.object.kind === 'Secret').every((m) => m.file === 'secrets.example.yaml')).toBe(true);
    const images = new Set(podTemplates(manifests).flatMap((t) => t.containers.map((c) => String(c.image).split(':')[0])));
    expect(new Set((kustomization!.images as Json[]).map((i) => i.name))).toEqual(images);
  });
});

describe('the app nodes', () => {
  const portNumber = (name: string | number) =>
    typeof name === 'number' ? name : appContainer.ports.find((p: Json) => p.name === name).containerPort;

  it('three replicas, rolled one at a time without ever dropping below three ready', () => {
    expect(app.spec.replicas).toBe(3);
    expect(app.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } });
    expect(get('PodDisruptionBudget', 'app').spec.maxUnavailable).toBe(1);
  });

  it('ready on GET /healthz :3000; alive by TCP, so a node waiting for a ring or draining is not killed', () => {
    expect(appContainer.readinessProbe.httpGet.path).toBe('/healthz');
    expect(portNumber(appContainer.readinessProbe.httpGet.port)).toBe(3000);
    expect(JSON.stringify(appContainer.livenessProbe)).not.toContain('/healthz');
    expect(portNumber(appContainer.livenessProbe.tcpSocket.port)).toBe(3000);
  });

  it('stops within its grace period: SIGTERM drain for SHUTDOWN_DRAIN, then at least 10 s to finish', () => {
    const drainMs = parseDuration(appConfig.data.SHUTDOWN_DRAIN)!;
    expect(drainMs).toBeGreaterThan(0);
    expect(app.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(drainMs + 10_000);
    expect(appContainer.lifecycle?.preStop).toBeUndefined();
  });

  it('takes NODE_ID from the pod name, NODE_ROLE auto, and the master key from the mounted Secret', () => {
    const env = envOf(appContainer);
    expect(env.get('NODE_ID')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.name' } });
    expect(env.get('NODE_ROLE')?.value).toBe('auto');
    const file: string = env.get('KEYRING_MASTER_KEY_FILE')?.value;
    const mount = appContainer.volumeMounts.find((m: Json) => file.startsWith(`${m.mountPath}/`));
    const volume = app.spec.template.spec.volumes.find((v: Json) => v.name === mount.name);
    expect(volume.secret.secretName).toBe('keyfleet-master-key');
    expect(volume.secret.items).toContainEqual({ key: 'master.key', path: file.slice(mount.mountPath.length + 1) });
    expect(volume.secret.defaultMode).toBe(0o400);
    expect(app.spec.template.spec.securityContext.fsGroup).toBe(app.spec.template.spec.securityContext.runAsGroup);
  });

  it('the environment the pod gets is one the node accepts (its own loadConfig), through Sentinel', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyfleet-k8s-'));
    try {
      const keyFile = join(dir, 'master.key');
      writeFileSync(keyFile, Buffer.alloc(32, 7).toString('base64'));
      const env: Record<string, string> = { ...appConfig.data };
      for (const variable of appContainer.env as Json[]) {
        if (variable.valueFrom?.secretKeyRef) env[variable.name] = 'a-test-secret-value';
        else if (variable.valueFrom?.fieldRef) env[variable.name] = 'app-5d8f7c9b6d-x2k9z';
        else env[variable.name] = String(variable.value).replace(/\$\((\w+)\)/g, (_, name: string) => env[name]!);
      }
      env.KEYRING_MASTER_KEY_FILE = keyFile;
      const config = loadConfig(env);
      expect(config.redis).toMatchObject({ kind: 'sentinel', name: 'keyfleet', username: 'keyfleet', password: 'a-test-secret-value' });
      expect(config.redis.kind === 'sentinel' && config.redis.sentinels).toHaveLength(3);
      expect(config).toMatchObject({ nodeRole: 'auto', nodeId: 'app-5d8f7c9b6d-x2k9z', port: 3000 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sets only variables the node reads', () => {
    const source = readdirSync(join(REPO_DIR, 'app/src'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => readFileSync(join(REPO_DIR, 'app/src', f), 'utf8'))
      .join('\n');
    const names = [...Object.keys(appConfig.data), ...(appContainer.env as Json[]).map((e) => e.name as string)];
    expect(names.filter((name) => !source.includes(name))).toEqual([]);
  });

  it('the headless Service `app` publishes ready app pods only, port 3000', () => {
    expect(headless.spec.clusterIP).toBe('None');
    expect(headless.spec.publishNotReadyAddresses).toBe(false);
    const selected = podTemplates(manifests).filter((t) => selects({ matchLabels: headless.spec.selector }, t.labels));
    expect(selected.map((t) => nameOf(t.owner))).toEqual(['Deployment app']);
    expect(headless.spec.ports).toEqual([expect.objectContaining({ port: 3000, targetPort: 'http' })]);
  });
});

describe('the balancer', () => {
  const directives = (cfg: string) =>
    cfg
      .split('\n')
      .map((line) => line.replace(/#.*$/, '').trim())
      .filter(Boolean);
  /** Everything but the resolvers section and the lines that name it. */
  const portable = (cfg: string) => {
    const out: string[] = [];
    let inResolvers = false;
    for (const line of directives(cfg)) {
      if (/^(global|defaults|frontend|backend|listen|resolvers)\b/.test(line)) inResolvers = line.startsWith('resolvers');
      if (inResolvers || line.startsWith('default-server')) continue;
      out.push(line);
    }
    return out;
  };

  it('runs haproxy/haproxy.cfg, changed only where DNS differs (carry changes there into lb.yaml)', () => {
    expect(portable(haproxyConfig)).toEqual(portable(readFileSync(join(REPO_DIR, 'haproxy/haproxy.cfg'), 'utf8')));
    const lines = directives(haproxyConfig);
    expect(lines).toContain('parse-resolv-conf');
    expect(lines.some((l) => l.includes('127.0.0.11'))).toBe(false);
    const resolvers = lines.find((l) => l.startsWith('resolvers '))!.split(' ')[1];
    expect(lines.find((l) => l.startsWith('default-server'))).toContain(`resolvers ${resolvers}`);
  });

  it('finds the app pods through the headless Service by its full name, checks them on /healthz', () => {
    const lines = directives(haproxyConfig);
    expect(lines).toContain(`server-template app 1-20 "\${KEYFLEET_APP_HOST}:${headless.spec.ports[0].port}"`);
    expect(lines).toContain(`http-check send meth GET uri ${appContainer.readinessProbe.httpGet.path}`);
    const env = envOf(container(lb, 'haproxy'));
    expect(env.get('KEYFLEET_APP_HOST')?.value).toBe(`${headless.metadata.name}.$(POD_NAMESPACE).svc.cluster.local`);
    expect(env.get('POD_NAMESPACE')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
  });

  it('reads the mounted ConfigMap and the TLS Secret where the configuration expects them', () => {
    const c = container(lb, 'haproxy');
    const configFile = c.args[c.args.indexOf('-f') + 1] as string;
    const mountOf = (volume: string) => c.volumeMounts.find((m: Json) => m.name === volume).mountPath as string;
    expect(configFile).toBe(`${mountOf('config')}/haproxy.cfg`);
    const tls = lb.spec.template.spec.volumes.find((v: Json) => v.name === 'tls').secret;
    const certificate = `${mountOf('tls')}/${tls.items.find((i: Json) => i.key === 'tls.crt').path}`;
    expect(directives(haproxyConfig).find((l) => l.startsWith('bind :8443'))).toContain(`crt ${certificate}`);
    expect(tls.items.find((i: Json) => i.key === 'tls.key').path).toBe(`${certificate.split('/').pop()}.key`);
  });
});

describe('Redis and its Sentinels', () => {
  const entrypoint = readFileSync(join(REPO_DIR, 'redis/entrypoint.sh'), 'utf8');
  const podNames = (set: Json) => Array.from({ length: set.spec.replicas }, (_, i) => `${set.metadata.name}-${i}.${set.spec.serviceName}`);

  it('three Redis pods with a volume each, three Sentinels with a quorum of two', () => {
    expect(redis.spec.replicas).toBe(3);
    expect(redis.spec.volumeClaimTemplates[0].spec.accessModes).toEqual(['ReadWriteOnce']);
    expect(container(redis, 'redis').volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    expect(sentinel.spec.replicas).toBe(3);
    expect(Number(envOf(container(sentinel, 'sentinel')).get('REDIS_SENTINEL_QUORUM')?.value)).toBe(2);
  });

  it('the pod lists in start.sh, and the nodes\' Sentinel list, name the pods the StatefulSets make', () => {
    for (const set of [redis, sentinel]) {
      const env = envOf(set.spec.template.spec.containers[0]);
      expect(env.get('REDIS_PODS')?.value.split(' ')).toEqual(podNames(redis));
      expect(env.get('SENTINEL_PODS')?.value.split(' ')).toEqual(podNames(sentinel));
      expect(env.get('REDIS_SERVICE')?.value).toBe(redis.spec.serviceName);
      expect(env.get('SENTINEL_SERVICE')?.value).toBe(sentinel.spec.serviceName);
    }
    const port = get('Service', sentinel.spec.serviceName).spec.ports[0].port;
    expect(appConfig.data.REDIS_SENTINELS.split(',')).toEqual(podNames(sentinel).map((host) => `${host}:${port}`));
  });

  it('keeps to redis/entrypoint.sh: its variables, its master name, its ACL user for the nodes', () => {
    expect(entrypoint).toContain(`sentinel monitor ${appConfig.data.REDIS_MASTER_NAME} `);
    expect(startScript).toContain(`get-master-addr-by-name ${appConfig.data.REDIS_MASTER_NAME}`);
    expect(entrypoint).toContain(`user ${appConfig.data.REDIS_USERNAME} on `);
    for (const name of ['REDIS_REPLICA_OF', 'REDIS_SENTINEL_MONITOR']) {
      expect(entrypoint).toContain(name);
      expect(startScript).toContain(name);
    }
    for (const set of [redis, sentinel]) {
      const own = ['POD_NAME', 'REDIS_PODS', 'SENTINEL_PODS', 'REDIS_SERVICE', 'SENTINEL_SERVICE', 'REDIS_MAXMEMORY', 'REDIS_SENTINEL_PASSWORD'];
      const unused = (set.spec.template.spec.containers[0].env as Json[])
        .map((e) => e.name as string)
        .filter((name) => !(own.includes(name) ? startScript : entrypoint).includes(name));
      expect(unused, nameOf(set as K8sObject)).toEqual([]);
    }
  });

  it('every shell script in the manifests parses (sh -n)', () => {
    const scripts = [startScript, ...podTemplates(manifests).flatMap((t) => t.containers.filter((c) => Array.isArray(c.command) && c.command[1] === '-c').map((c) => (c.command as string[])[2]!))];
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    for (const script of scripts) expect(() => execFileSync('sh', ['-n'], { input: script, stdio: 'pipe' })).not.toThrow();
  });
});

describe('every pod', () => {
  it.each(podTemplates(manifests).map((t) => [nameOf(t.owner), t] as const))('%s meets the restricted Pod Security profile, read-only, with resources', (_, t) => {
    const pod = t.spec as Json;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(Number.isInteger(pod.securityContext.runAsUser) && pod.securityContext.runAsUser > 0).toBe(true);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const c of t.containers) {
      expect(c.securityContext, String(c.name)).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      expect(c.resources, String(c.name)).toMatchObject({ requests: { cpu: expect.any(String), memory: expect.any(String) }, limits: { memory: expect.any(String) } });
    }
  });
});
