#!/usr/bin/env node
// What checking one credential costs on this machine, without HTTP or a network: jose's full
// checks, the bare node:crypto operations (the floor), keyfleet's node:crypto path
// (fastVerify.ts), keyfleet's verify functions with the verified-credential cache cleared
// before every call (a miss) and not (a hit), and the ratios. Figures in docs/performance.md.
//
//   npm run build && node scripts/bench-verify.mjs
import { createDecipheriv, createHmac, KeyObject, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { jwtDecrypt, jwtVerify } from 'jose';

const dist = new URL('../dist/', import.meta.url).href;
const { generateKey } = await import(`${dist}keyring/generate.js`);
const { activate, emptyRing, stage } = await import(`${dist}keyring/lifecycle.js`);
const { masterKeyId } = await import(`${dist}keyring/wrap.js`);
const { sealRing } = await import(`${dist}keyring/seal.js`);
const { RingHolder } = await import(`${dist}keyring/holder.js`);
const { mintAccessToken } = await import(`${dist}auth/tokens.js`);
const { sealAuthCookie } = await import(`${dist}auth/authCookie.js`);
const { createVerifiers } = await import(`${dist}auth/verifiers.js`);
const { verifyEs256Jws, decryptDirA256GcmJwe, readProtectedHeader } = await import(`${dist}auth/fastVerify.js`);
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
  // The ring as Redis holds it: sealed (format 2) under the master key.
  store: { readRaw: async () => JSON.stringify(sealRing(masterKey, doc)), readVersion: async () => 1 },
  subscriber: {},
  masterKey,
  clock: { now: () => Date.now() },
  log: createLogger('silent'),
  reloadIntervalMs: 5000,
});
await holder.reload('bench', { throwOnError: true });
const ring = holder.current;
// A node's verifiers (auth/verifiers.ts): the token's and the cookie's, each with its cache.
const verifiers = createVerifiers({ holder });
const verifyAccessToken = (value, options) => verifiers.token.verify(value, options);
const openAuthCookie = (value, options) => verifiers.cookie.verify(value, options);
const { token } = await mintAccessToken(ring, { user: 'demo', ttlMs: 900_000, now });
const cookie = await sealAuthCookie(ring, { user: 'demo', ttlMs: 900_000, now });
const at = () => ({ now: Date.now(), clockSkewMs: 30_000 });

// The machine is shared and its load moves: every case runs in small batches, the cases
// interleaved round after round, and each reports the median of its batches.
const ROUNDS = 15;
const cases = [];
const time = (name, n, fn) => cases.push({ name, n, fn, samples: [] });
async function runAll() {
  for (const c of cases) for (let i = 0; i < Math.min(c.n, 2000); i++) await c.fn(); // warm-up, JIT
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of cases) {
      const batch = Math.max(1, Math.round(c.n / ROUNDS));
      const started = process.hrtime.bigint();
      for (let i = 0; i < batch; i++) await c.fn();
      c.samples.push(Number(process.hrtime.bigint() - started) / 1e3 / batch);
    }
  }
  const costs = {};
  for (const c of cases) {
    const sorted = [...c.samples].sort((x, y) => x - y);
    const us = sorted[Math.floor(sorted.length / 2)];
    costs[c.name] = us;
    console.log(`${c.name.padEnd(58)} ${us.toFixed(2).padStart(8)} µs/call ${Math.round(1e6 / us).toString().padStart(9)} /s  (batches ${sorted[0].toFixed(1)}–${sorted.at(-1).toFixed(1)})`);
  }
  return costs;
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
// The floor: the bare cryptography through node:crypto, nothing else.
const publicKey = KeyObject.from(sign.verifyKey);
const [h, p, sigText] = token.split('.');
const signingInput = Buffer.from(`${h}.${p}`);
const signature = Buffer.from(sigText, 'base64url');
await time('floor: node:crypto ECDSA P-256 verify', 10_000, () => cryptoVerify('sha256', signingInput, { key: publicKey, dsaEncoding: 'ieee-p1363' }, signature));
const [ch, , civ, cct, ctag] = cookie.split('.');
const [iv, ct, tag, aad] = [Buffer.from(civ, 'base64url'), Buffer.from(cct, 'base64url'), Buffer.from(ctag, 'base64url'), Buffer.from(ch)];
await time('floor: node:crypto AES-256-GCM decrypt', 50_000, () => {
  const d = createDecipheriv('aes-256-gcm', aes, iv);
  d.setAAD(aad);
  d.setAuthTag(tag);
  return Buffer.concat([d.update(ct), d.final()]);
});
const opts = { now: Date.now(), clockSkewMs: 30_000 };
await time('new path: verifyEs256Jws (parse + verify + claims)', 10_000, () => {
  const parts = token.split('.');
  return verifyEs256Jws(parts, readProtectedHeader(parts), publicKey, opts);
});
await time('new path: decryptDirA256GcmJwe (parse + decrypt + claims)', 50_000, () => {
  const parts = cookie.split('.');
  return decryptDirA256GcmJwe(parts, readProtectedHeader(parts), aes, opts);
});
await time('verifyAccessToken, miss (cache cleared)', 5000, () => {
  verifiers.token.cache.clear();
  return verifyAccessToken(token, at());
});
await time('openAuthCookie, miss (cache cleared)', 10_000, () => {
  verifiers.cookie.cache.clear();
  return openAuthCookie(cookie, at());
});
await time('verifyAccessToken, hit', 200_000, () => verifyAccessToken(token, at()));
await time('openAuthCookie, hit', 200_000, () => openAuthCookie(cookie, at()));

const costs = await runAll();
const r = (a, b) => `${(costs[a] / costs[b]).toFixed(2)}×`;
console.log('\nratios (one run):');
console.log(`  token:  jose jwtVerify / new path ${r('jose jwtVerify (ES256, CryptoKey)', 'new path: verifyEs256Jws (parse + verify + claims)')}; new path / bare ECDSA verify ${r('new path: verifyEs256Jws (parse + verify + claims)', 'floor: node:crypto ECDSA P-256 verify')}; verifyAccessToken miss / hit ${r('verifyAccessToken, miss (cache cleared)', 'verifyAccessToken, hit')}`);
console.log(`  cookie: jose jwtDecrypt (pre-imported) / new path ${r('jose jwtDecrypt (dir/A256GCM, pre-imported)', 'new path: decryptDirA256GcmJwe (parse + decrypt + claims)')}; new path / bare AES-GCM ${r('new path: decryptDirA256GcmJwe (parse + decrypt + claims)', 'floor: node:crypto AES-256-GCM decrypt')}; openAuthCookie miss / hit ${r('openAuthCookie, miss (cache cleared)', 'openAuthCookie, hit')}`);
