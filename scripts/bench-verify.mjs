#!/usr/bin/env node
// What checking one credential costs on this machine, without HTTP or a network: jose's full
// checks, a raw HMAC for scale, keyfleet's verify functions with the verified-credential
// cache cleared before every call (a miss) and not (a hit). Figures in docs/performance.md.
//
//   npm run build && node scripts/bench-verify.mjs
import { createHmac, randomBytes } from 'node:crypto';
import { jwtDecrypt, jwtVerify } from 'jose';

const dist = new URL('../dist/', import.meta.url).href;
const { generateKey } = await import(`${dist}keyring/generate.js`);
const { activate, emptyRing, stage } = await import(`${dist}keyring/lifecycle.js`);
const { masterKeyId } = await import(`${dist}keyring/wrap.js`);
const { RingHolder } = await import(`${dist}keyring/holder.js`);
const { mintAccessToken, verifyAccessToken } = await import(`${dist}auth/tokens.js`);
const { sealAuthCookie, openAuthCookie } = await import(`${dist}auth/authCookie.js`);
const { verifyCacheFor } = await import(`${dist}auth/verifyCache.js`);
const { createLogger } = await import(`${dist}lib/log.js`);

// A ring with one active key per purpose, held by a RingHolder over an in-memory store.
const masterKey = randomBytes(32);
const now = Date.now();
const lifetimes = { sign: 900_000, encrypt: 900_000, cookie: 900_000, clockSkewMs: 30_000 };
let doc = emptyRing(masterKeyId(masterKey), now);
for (const purpose of ['sign', 'encrypt', 'cookie']) {
  const key = await generateKey(purpose, now, masterKey);
  doc = activate(stage(doc, key, now), key.kid, now, lifetimes);
}
doc = { ...doc, version: 1 };
const holder = new RingHolder({
  store: { read: async () => doc, readVersion: async () => 1 },
  subscriber: {},
  masterKey,
  clock: { now: () => Date.now() },
  log: createLogger('silent'),
  reloadIntervalMs: 5000,
});
await holder.reload('bench', { throwOnError: true });
const ring = holder.current;
const { token } = await mintAccessToken(ring, { user: 'demo', ttlMs: 900_000, now });
const cookie = await sealAuthCookie(ring, { user: 'demo', ttlMs: 900_000, now });
const at = () => ({ now: Date.now(), clockSkewMs: 30_000 });

async function time(name, n, fn) {
  for (let i = 0; i < Math.min(n, 2000); i++) await fn();
  const started = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn();
  const us = Number(process.hrtime.bigint() - started) / 1e3 / n;
  console.log(`${name.padEnd(48)} ${us.toFixed(2).padStart(8)} µs/call ${Math.round(1e6 / us).toString().padStart(9)} /s`);
}

console.log(`Node ${process.version}, one core, token ${token.length} bytes, cookie ${cookie.length} bytes`);
const sign = ring.active('sign');
const verifyOptions = { algorithms: ['ES256'], issuer: 'keyfleet', audience: 'keyfleet', clockTolerance: 30, requiredClaims: ['sub', 'exp', 'iat'], typ: 'JWT' };
await time('jose jwtVerify (ES256, CryptoKey)', 5000, () => jwtVerify(token, sign.verifyKey, verifyOptions));
const hmacKey = randomBytes(32);
await time('raw HMAC-SHA256 of the token (node:crypto)', 50_000, () => createHmac('sha256', hmacKey).update(token).digest());
const aes = ring.active('encrypt').secret;
await time('jose jwtDecrypt (dir/A256GCM, KeyObject)', 10_000, () => jwtDecrypt(cookie, aes, { clockTolerance: 30 }));
const aesCryptoKey = await crypto.subtle.importKey('raw', aes.export(), { name: 'AES-GCM' }, false, ['decrypt']);
await time('jose jwtDecrypt (dir/A256GCM, pre-imported)', 10_000, () => jwtDecrypt(cookie, aesCryptoKey, { clockTolerance: 30 }));
await time('verifyAccessToken, miss (cache cleared)', 5000, () => {
  verifyCacheFor(holder, 'sign').clear();
  return verifyAccessToken(holder, token, at());
});
await time('openAuthCookie, miss (cache cleared)', 10_000, () => {
  verifyCacheFor(holder, 'encrypt').clear();
  return openAuthCookie(holder, cookie, at());
});
await time('verifyAccessToken, hit', 200_000, () => verifyAccessToken(holder, token, at()));
await time('openAuthCookie, hit', 200_000, () => openAuthCookie(holder, cookie, at()));
