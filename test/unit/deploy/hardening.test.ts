// Issue 11, part 4, in every manifest without running one: TLS ciphers at HAProxy, the
// stats page kept to loopback or a password, HTTPS redirect and __Host- cookies on by
// default in Swarm and Kubernetes, secret files readable by their process's user alone.
// (The running balancer is checked in test/integration/tlsHardening.test.ts.)
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { REPO_DIR, loadAll } from '../k8s/manifests.js';

type Json = Record<string, any>;

const read = (path: string) => readFileSync(join(REPO_DIR, path), 'utf8');
const directives = (cfg: string) =>
  cfg
    .split('\n')
    .map((line) => line.replace(/#.*$/, '').trim())
    .filter(Boolean);
/** The lines of one section (`frontend stats`, `global`) of an HAProxy configuration. */
function section(cfg: string, header: string): string[] {
  const lines = directives(cfg);
  const start = lines.indexOf(header);
  expect(start, header).toBeGreaterThanOrEqual(0);
  const end = lines.findIndex((line, i) => i > start && /^(global|defaults|frontend|backend|listen|resolvers|userlist)\b/.test(line));
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

const { manifests } = loadAll();
const k8s = (kind: string, name: string): Json => manifests.find((m) => m.object.kind === kind && m.object.metadata.name === name)!.object as Json;
// YAML 1.1, as Docker reads it (go-yaml): `mode: 0400` is octal.
const swarm = parse(read('deploy/swarm/stack.yaml'), { version: '1.1' }) as Json;
const compose = parse(read('compose.yaml'), { version: '1.1' }) as Json;
const configs = {
  'haproxy/haproxy.cfg': read('haproxy/haproxy.cfg'),
  'deploy/k8s/lb.yaml': k8s('ConfigMap', 'haproxy-config').data['haproxy.cfg'] as string,
};

describe('HAProxy: TLS', () => {
  it.each(Object.entries(configs))('%s: TLS 1.2+ with ECDHE and AEAD suites only (no CBC, no SHA-1 MAC, no RSA key exchange)', (_, cfg) => {
    const global = section(cfg, 'global');
    expect(global).toContain('ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets');
    const ciphers = global.find((line) => line.startsWith('ssl-default-bind-ciphers '))!.split(' ')[1]!.split(':');
    expect(ciphers.length).toBeGreaterThan(0);
    for (const cipher of ciphers) expect(cipher).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    const suites = global.find((line) => line.startsWith('ssl-default-bind-ciphersuites '))!.split(' ')[1]!.split(':');
    expect(suites.sort()).toEqual(['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
  });

  it.each(Object.entries(configs))('%s: the stats page binds KEYFLEET_STATS_BIND and asks for STATS_PASSWORD when set', (_, cfg) => {
    const stats = section(cfg, 'frontend stats');
    expect(stats).toContain('bind "${KEYFLEET_STATS_BIND-:8404}"');
    expect(stats).toContain('http-request auth realm keyfleet-stats if { env(STATS_PASSWORD) -m len 1: } !{ http_auth(stats-users) }');
    expect(section(cfg, 'userlist stats-users')).toEqual(['user "${STATS_USER-admin}" insecure-password "${STATS_PASSWORD-}"']);
  });
});

describe('the stats page is loopback-only or password-protected in every manifest', () => {
  it('compose: published on 127.0.0.1 only', () => {
    expect(compose.services.lb.ports).toContain('127.0.0.1:${STATS_PORT:-8404}:8404');
    for (const port of compose.services.lb.ports as string[]) expect(port).toMatch(/^127\.0\.0\.1:/);
  });

  it('Swarm: published on every address, so a password is required (SWARM_STATS_PASSWORD, which bootstrap writes)', () => {
    expect(swarm.services.lb.environment.STATS_PASSWORD).toMatch(/^\$\{SWARM_STATS_PASSWORD:\?/);
    expect(read('scripts/bootstrap.sh')).toMatch(/for name in [^\n]*SWARM_STATS_PASSWORD/);
  });

  it('compose: the stats page asks for a password only when STATS_PASSWORD is set by the user', () => {
    expect(compose.services.lb.environment.STATS_PASSWORD).toBe('${STATS_PASSWORD:-}');
    expect(read('scripts/bootstrap.sh')).not.toMatch(/for name in [^\n]* STATS_PASSWORD/);
  });

  it('Kubernetes: bound to the pod\'s loopback (kubectl port-forward), and in no Service or container port', () => {
    const lb = k8s('Deployment', 'lb');
    const haproxy = lb.spec.template.spec.containers.find((c: Json) => c.name === 'haproxy');
    expect(haproxy.env).toContainEqual({ name: 'KEYFLEET_STATS_BIND', value: '127.0.0.1:8404' });
    expect(haproxy.ports.map((p: Json) => p.containerPort)).not.toContain(8404);
    for (const m of manifests.filter((m) => m.object.kind === 'Service')) {
      expect(JSON.stringify((m.object as Json).spec.ports)).not.toContain('8404');
    }
  });
});

describe('HTTPS redirect and __Host- cookies, on by default in Swarm and Kubernetes', () => {
  it('Swarm', () => {
    expect(swarm.services.lb.environment.KEYFLEET_REDIRECT_HTTPS).toBe('${KEYFLEET_REDIRECT_HTTPS:-1}');
    expect(swarm.services.app.environment.COOKIE_HOST_PREFIX).toBe('${COOKIE_HOST_PREFIX:-true}');
  });

  it('Kubernetes', () => {
    const haproxy = k8s('Deployment', 'lb').spec.template.spec.containers.find((c: Json) => c.name === 'haproxy');
    expect(haproxy.env).toContainEqual({ name: 'KEYFLEET_REDIRECT_HTTPS', value: '1' });
    expect(k8s('ConfigMap', 'app-config').data.COOKIE_HOST_PREFIX).toBe('true');
  });

  it('compose (the demo, plain HTTP on 127.0.0.1) keeps both off: the contract names auth and sid', () => {
    expect(compose.services.lb.environment.KEYFLEET_REDIRECT_HTTPS).toBe('${KEYFLEET_REDIRECT_HTTPS:-0}');
    expect(compose.services.app.environment.COOKIE_HOST_PREFIX).toBeUndefined();
  });
});

describe('secret files: readable by the process user alone', () => {
  it('Swarm: the master key owned by the node\'s user, the TLS key by haproxy\'s, mode 0400', () => {
    expect(swarm.services.app.secrets).toEqual([{ source: 'master_key', target: 'master_key', uid: '1000', gid: '999', mode: 0o400 }]);
    expect(swarm.services.lb.secrets).toEqual([{ source: 'tls_pem', target: '/usr/local/etc/haproxy/certs/keyfleet.pem', uid: '100', gid: '101', mode: 0o400 }]);
  });

  it('Kubernetes: defaultMode 0400 for the master key and the TLS Secret, fsGroup the process\'s own group', () => {
    for (const [deployment, volume] of [['app', 'master-key'], ['lb', 'tls']] as const) {
      const pod = k8s('Deployment', deployment).spec.template.spec;
      expect(pod.volumes.find((v: Json) => v.name === volume).secret.defaultMode).toBe(0o400);
      expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
    }
  });

  it('compose: bind mounts keep the host file\'s mode, which scripts/bootstrap.sh sets to 0400 for the container\'s user', () => {
    const bootstrap = read('scripts/bootstrap.sh');
    expect(bootstrap).toContain('chmod 400 secrets/master.key');
    expect(bootstrap).toContain('chmod 400 secrets/tls/haproxy.pem');
    expect(bootstrap).toMatch(/\(umask 077 && touch \.env\)/);
    expect(bootstrap).not.toMatch(/chmod 644 [^\n]*(master\.key|haproxy\.pem)/);
  });
});

describe('scripts/bootstrap.sh, its functions run alone in a scratch directory', () => {
  const script = read('scripts/bootstrap.sh');
  const fn = (name: string) => {
    const start = script.indexOf(`${name}() {`);
    expect(start, name).toBeGreaterThanOrEqual(0);
    return script.slice(start, script.indexOf('\n}\n', start) + 3);
  };
  /** Runs `body` in `dir` with bootstrap's named functions defined (say and apt_install stubbed). */
  const runIn = (dir: string, functions: string[], body: string) =>
    execFileSync('bash', ['-euo', 'pipefail', '-c', `say() { echo "$*" >&2; }\napt_install() { exit 9; }\nDEMO_TLS_SUBJECT="/CN=localhost/O=keyfleet demo"\n${functions.map(fn).join('\n')}\ncd "${dir}"\n${body}`], { stdio: 'pipe' }).toString();
  const basicConstraints = (file: string) => execFileSync('openssl', ['x509', '-in', file, '-noout', '-ext', 'basicConstraints']).toString();
  const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);

  it('remakes a demo certificate an older bootstrap made as a CA (CA:TRUE) as a leaf; keeps a leaf, and any operator\'s certificate', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyfleet-bootstrap-'));
    try {
      const tls = join(dir, 'secrets/tls');
      mkdirSync(tls, { recursive: true });
      const make = (subject: string, ca: string) =>
        execFileSync('sh', ['-c', `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "${subject}" -addext "basicConstraints=critical,${ca}" -keyout k.pem -out c.pem 2>/dev/null && cat c.pem k.pem > haproxy.pem && mv c.pem cert.pem && rm k.pem && chmod 644 haproxy.pem`], { cwd: tls });
      make('/CN=localhost/O=keyfleet demo', 'CA:TRUE'); // what the old script made
      const output = runIn(dir, ['ensure_tls_certificate'], 'ensure_tls_certificate 2>&1');
      expect(output).toMatch(/CA:TRUE.*remaking it as a leaf/);
      expect(basicConstraints(join(tls, 'haproxy.pem'))).toMatch(/CA:FALSE/);
      expect(basicConstraints(join(tls, 'cert.pem'))).toMatch(/CA:FALSE/);
      expect(readFileSync(join(tls, 'haproxy.pem'), 'utf8')).toMatch(/BEGIN PRIVATE KEY/);
      expect([mode(join(tls, 'haproxy.pem')), mode(join(tls, 'cert.pem'))]).toEqual(['400', '644']);
      const leaf = readFileSync(join(tls, 'haproxy.pem'));
      runIn(dir, ['ensure_tls_certificate'], 'ensure_tls_certificate');
      expect(readFileSync(join(tls, 'haproxy.pem')).equals(leaf)).toBe(true);
      make('/CN=keyfleet.example.com/O=Example', 'CA:TRUE'); // an operator's own file: never touched
      const theirs = readFileSync(join(tls, 'haproxy.pem'));
      runIn(dir, ['ensure_tls_certificate'], 'ensure_tls_certificate');
      expect(readFileSync(join(tls, 'haproxy.pem')).equals(theirs)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes .env readable by its owner only, and tightens one an older version left 0644', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keyfleet-bootstrap-'));
    try {
      runIn(dir, ['set_env'], 'umask 022; set_env REDIS_PASSWORD secret1');
      expect(mode(join(dir, '.env'))).toBe('600');
      chmodSync(join(dir, '.env'), 0o644);
      runIn(dir, ['set_env'], 'umask 022; set_env REDIS_PASSWORD secret2; set_env OTHER x');
      expect(mode(join(dir, '.env'))).toBe('600');
      expect(readFileSync(join(dir, '.env'), 'utf8')).toBe('REDIS_PASSWORD=secret2\nOTHER=x\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
