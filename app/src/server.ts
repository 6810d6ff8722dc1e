import { ConfigError, createKeyfleet, KeyfleetError, type Keyfleet } from './index.js';
import { demoApp } from './demo/app.js';

// keyfleet's own node: the demo app, built on the public entry point like any other app.
// Owns the process: configuration, listen, signals, graceful shutdown (through kf.serve).

/** How long start-up waits for the key ring before listening regardless. */
const LISTEN_AFTER_MS = 10_000;

async function main(): Promise<void> {
  let kf: Keyfleet;
  try {
    kf = createKeyfleet();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`keyfleet: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const { config, log } = kf;
  const refuse = (error: unknown): never => {
    if (error instanceof KeyfleetError && error.code === 'ERR_MASTER_KEY_MISMATCH') {
      log.fatal({ code: error.code }, error.message);
      console.error(`keyfleet: refusing to start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  };

  const app = demoApp(kf, { users: config.users, throttle: kf.loginThrottle, dashboard: config.dashboard !== 'off', trustProxy: config.trustProxy });

  // Listen once the ring is loaded, so the balancer (which may send a request to a server it
  // has just found through DNS, before its first health check) never reaches a node without
  // one. If loading takes longer (Redis unreachable, an empty ring), listen anyway so that
  // /healthz can say why the node is not ready; credentials then get 503, retried elsewhere.
  let failed: { error: unknown } | undefined;
  const starting = kf.start().catch((error: unknown) => {
    failed = { error };
  });
  await Promise.race([starting, new Promise((resolve) => setTimeout(resolve, LISTEN_AFTER_MS))]);
  if (failed) refuse(failed.error);
  await kf.serve(app.listen(config.port));
  await starting;
  if (failed) refuse(failed.error);
  // uptimeMs: process start to this line (Node's own start-up included): the cold-start figure.
  log.info({ ring: kf.ringVersion, uptimeMs: Math.round(process.uptime() * 1000) }, kf.ready ? 'ready' : 'waiting for a key ring');
}

main().catch((error: unknown) => {
  console.error('keyfleet: failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
