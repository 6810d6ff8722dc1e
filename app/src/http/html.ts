import { createHash, randomBytes } from 'node:crypto';
import type { Response } from 'express';

// Small helpers shared by the two HTML views (the page at / and the dashboard).

/** Escapes text for HTML element content and quoted attribute values. */
export const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/**
 * A stable hue (0-359) per node id, so each node keeps its colour across reloads and views.
 * Numbered ids (node-1, node-2...) step round the wheel by the golden angle, so neighbours
 * never look alike; other ids (container hostnames) hash.
 */
export function nodeHue(nodeId: string): number {
  const hash = (text: string) => createHash('sha256').update(text).digest().readUInt16BE(0);
  const numbered = /^([A-Za-z._-]*)(\d{1,6})$/.exec(nodeId);
  if (!numbered) return hash(nodeId) % 360;
  return Math.round(hash(numbered[1]!) + Number(numbered[2]) * 137.508) % 360;
}

/**
 * Headers for an HTML view: not cached, not framed, not sniffed, and a Content-Security-Policy
 * that allows only this response's own inline style and script (by nonce) and requests to
 * this origin. Returns the nonce to put on the <style> and <script> elements.
 */
export function htmlHeaders(res: Response): string {
  const nonce = randomBytes(16).toString('base64');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader(
    'Content-Security-Policy',
    `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'`,
  );
  res.type('html');
  return nonce;
}
