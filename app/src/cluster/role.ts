/**
 * A node's part in the election: `auto` may hold the primary lease, `primary` always tries
 * to, `secondary` never generates or rotates keys (NODE_ROLE).
 */
export const NODE_ROLES = ['auto', 'primary', 'secondary'] as const;
export type NodeRole = (typeof NODE_ROLES)[number];
