// Every key keyfleet writes lives under one prefix, so the nodes' Redis ACL user can be
// limited to it (`~keyfleet:*`, `&keyfleet:*`).
export const PREFIX = 'keyfleet:';

export const redisKeys = {
  ring: `${PREFIX}ring`,
  ringVersion: `${PREFIX}ring:version`,
  ringChannel: `${PREFIX}ring:changed`,
  audit: `${PREFIX}audit`,
  lease: `${PREFIX}lease`,
  nodePrefix: `${PREFIX}node:`,
  node: (id: string) => `${PREFIX}node:${id}`,
  sessionPrefix: `${PREFIX}sess:`,
  commands: `${PREFIX}commands`,
  reply: (id: string) => `${PREFIX}reply:${id}`,
} as const;
