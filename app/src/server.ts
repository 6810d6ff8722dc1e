import { once } from 'node:events';
import { loadConfig } from './config/index.js';
import { ConfigError, KeyfleetError } from './lib/errors.js';
import { createLogger } from './lib/log.js';
import { describeTarget } from './lib/redis.js';
import { startMetricsServer } from './metrics/server.js';
import { KeyfleetNode } from './node.js';

// Owns the process: configuration, listen, signals, graceful shutdown.
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`keyfleet: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  const log = createLogger(config.logLevel, config.nodeId);
  log.info({ role: config.nodeRole, redis: describeTarget(config.redis), port: config.port }, 'starting');
  const node = new KeyfleetNode(config, log);
  const server = node.app.listen(config.port);
  server.keepAliveTimeout = 65_000;
  await once(server, 'listening');
  // Prometheus scrapes each node here, on a port the balancer does not forward.
  const metricsServer = config.metricsPort === 0 ? undefined : await startMetricsServer(node.metrics.registry, config.metricsPort);
  try {
    await node.start();
  } catch (error) {
    if (error instanceof KeyfleetError && error.code === 'ERR_MASTER_KEY_MISMATCH') {
      log.fatal({ code: error.code }, error.message);
      console.error(`keyfleet: refusing to start: ${error.message}`);
      process.exit(1);
    }
    throw error;
  }
  // uptimeMs: process start to this line (Node's own start-up included): the cold-start figure.
  log.info({ ring: node.holder.current?.version ?? null, uptimeMs: Math.round(process.uptime() * 1000) }, node.ready ? 'ready' : 'waiting for a key ring');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Fail health checks first, give the balancer time to notice, then finish in-flight work.
    log.info({ signal, drainMs: config.shutdownDrainMs }, 'draining');
    node.drain();
    await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainMs));
    server.closeIdleConnections();
    await node.stop(server);
    metricsServer?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  console.error('keyfleet: failed to start:', error instanceof Error ? error.message : error);
  process.exit(1);
});
