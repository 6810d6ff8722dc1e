import { pino, type Logger } from 'pino';

// Secrets never reach logs: these paths are censored wherever a component logs an object.
const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'password',
  '*.password',
  'token',
  '*.token',
  'material',
  '*.material',
  'masterKey',
  '*.masterKey',
  'redisUrl',
];

export function createLogger(level = process.env.LOG_LEVEL ?? 'info', nodeId?: string): Logger {
  return pino({
    level,
    base: nodeId ? { node: nodeId } : undefined,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  });
}

/** `redis://user:secret@host:6379/0` -> `redis://user:***@host:6379/0` for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '[unparseable url]';
  }
}

export type { Logger };
