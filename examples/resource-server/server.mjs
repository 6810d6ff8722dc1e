// A resource server as another team would write it: it trusts keyfleet's access tokens for
// its own audience, and knows keyfleet only by its issuer URL (OpenID Connect Discovery) and
// the JWKS that names. No keyfleet code, no shared secret: jose's createRemoteJWKSet with its
// defaults (10 min cache, 30 s cooldown before refetching on an unknown `kid`).
//
//   AUDIENCE            this server's name, as registered in keyfleet's AUDIENCES (required)
//   KEYFLEET_URL        where this server reaches keyfleet (default http://lb:8080)
//   JWKS_URI, ISSUER    override what discovery says (when the public issuer URL is not
//                       reachable from here)
//   JWKS_CACHE_MAX_AGE, JWKS_COOLDOWN  milliseconds; unset: jose's defaults (tests shorten them)
//   PATH_PREFIX         default /api; PORT default 4000
import { createServer } from 'node:http';
import { hostname } from 'node:os';
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

const env = process.env;
const server = env.SERVER_ID || hostname();
const audience = env.AUDIENCE;
const keyfleetUrl = (env.KEYFLEET_URL || 'http://lb:8080').replace(/\/+$/, '');
const prefix = (env.PATH_PREFIX || '/api').replace(/\/+$/, '');
const port = Number(env.PORT || 4000);

function millis(name) {
  if (env[name] === undefined || env[name] === '') return undefined;
  const value = Number(env[name]);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`resource-server: ${name} must be a whole number of milliseconds`);
    process.exit(1);
  }
  return value;
}
if (!audience) {
  console.error('resource-server: AUDIENCE is required (this server\'s name in keyfleet\'s AUDIENCES)');
  process.exit(1);
}
const cacheMaxAge = millis('JWKS_CACHE_MAX_AGE');
const cooldownDuration = millis('JWKS_COOLDOWN');
const jwksOptions = {
  ...(cacheMaxAge !== undefined ? { cacheMaxAge } : {}),
  ...(cooldownDuration !== undefined ? { cooldownDuration } : {}),
};

/** Set once discovery succeeded: the issuer to expect and the key set to verify with. */
let verifier;

async function discover() {
  const response = await fetch(`${keyfleetUrl}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`discovery answered ${response.status}`);
  const config = await response.json();
  const issuer = env.ISSUER || config.issuer;
  const jwksUri = env.JWKS_URI || config.jwks_uri;
  if (typeof issuer !== 'string' || typeof jwksUri !== 'string') throw new Error('discovery document without issuer or jwks_uri');
  verifier = { issuer, jwksUri, keys: createRemoteJWKSet(new URL(jwksUri), jwksOptions) };
  log('ready', { issuer, jwksUri, audience, ...jwksOptions });
}

function log(msg, fields = {}) {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), server, msg, ...fields })}\n`);
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-resource-server': server });
  res.end(JSON.stringify(body));
}

async function whoami(req, res) {
  const match = /^Bearer ([A-Za-z0-9._~+/=-]+)$/.exec((req.headers.authorization || '').trim());
  if (!match) return send(res, 401, { error: 'expected "Authorization: Bearer <token>"', code: 'ERR_NO_TOKEN' });
  try {
    const { payload, protectedHeader } = await jwtVerify(match[1], verifier.keys, {
      issuer: verifier.issuer,
      audience,
      algorithms: ['ES256'],
      requiredClaims: ['sub', 'exp'],
    });
    send(res, 200, { user: payload.sub, audience, kid: protectedHeader.kid, server });
  } catch (error) {
    if (error instanceof errors.JWKSTimeout || !(error instanceof errors.JOSEError)) {
      log('cannot verify', { err: String(error) });
      return send(res, 503, { error: 'token keys unavailable', code: 'ERR_JWKS_UNAVAILABLE' });
    }
    // jose's stable codes (ERR_JWKS_NO_MATCHING_KEY, ERR_JWT_EXPIRED, ERR_JWT_CLAIM_VALIDATION_FAILED…).
    send(res, 401, { error: 'token refused', code: error.code, ...(error.claim ? { claim: error.claim } : {}) });
  }
}

const http = createServer((req, res) => {
  const path = (req.url || '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method not allowed', code: 'ERR_METHOD' });
  if (path === `${prefix}/healthz`) return send(res, verifier ? 200 : 503, { status: verifier ? 'ok' : 'starting', server, audience });
  if (!verifier) return send(res, 503, { error: 'not ready: keyfleet not discovered yet', code: 'ERR_NOT_READY' });
  if (path === `${prefix}/whoami`) return void whoami(req, res);
  send(res, 404, { error: 'not found', code: 'ERR_NOT_FOUND' });
});
http.keepAliveTimeout = 65_000;
http.listen(port, () => log('listening', { port, prefix }));

// keyfleet may start after this server: try discovery until it answers.
(async () => {
  for (let attempt = 1; !verifier; attempt++) {
    try {
      await discover();
    } catch (error) {
      if (attempt === 1 || attempt % 10 === 0) log('waiting for keyfleet discovery', { url: keyfleetUrl, err: String(error) });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
})();

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => http.close(() => process.exit(0)));
