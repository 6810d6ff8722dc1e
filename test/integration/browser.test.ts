import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PURPOSES } from '../../app/src/keyring/types.js';
import { Cluster } from '../support/cluster.js';
import { request } from '../support/http.js';

// The page and the dashboard in a real browser (Debian's Chromium, driven by playwright-core;
// scripts/ensure-chromium.sh installs it) against a real cluster: three nodes behind HAProxy.
// Screenshots land in test/artifacts/ (git-ignored); docs/ holds a copy of two of them.

const ARTIFACTS = resolve(import.meta.dirname, '../artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NODES = 3;

const shot = (page: Page, name: string) => page.screenshot({ path: resolve(ARTIFACTS, `${name}.png`), fullPage: true });
const text = async (page: Page, selector: string) => (await page.locator(selector).textContent())?.trim() ?? '';

describe('the page and the dashboard in a browser', () => {
  let cluster: Cluster | undefined;
  let browser: Browser | undefined;
  let context: BrowserContext;
  let page: Page;
  let base: string;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    cluster = await Cluster.start({ nodes: NODES, env: { DASHBOARD: 'login', DASHBOARD_USERS: 'demo' } });
    base = cluster.url;
    context = await browser.newContext({ viewport: { width: 960, height: 720 } });
    page = await context.newPage();
  });

  afterAll(async () => {
    try {
      await browser?.close();
    } finally {
      await cluster?.stop();
    }
  });

  it('logs in, then reloads across at least three nodes, staying logged in, the visit counter rising', async () => {
    await page.goto(`${base}/`);
    await page.locator('#login-form').waitFor();
    // The form comes prefilled with the demo account.
    expect(await page.inputValue('#username')).toBe('demo');
    await shot(page, 'page-login');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.locator('#user').waitFor();
    expect(await text(page, '#user')).toBe('demo');

    const seen = new Set<string>();
    let visits = 0;
    for (let reload = 0; reload < 12 && (seen.size < NODES || reload < NODES); reload++) {
      if (reload > 0) await page.reload();
      await page.locator('#user').waitFor();
      const node = await text(page, '#node');
      const count = Number(await text(page, '#visits'));
      expect(await text(page, '#user')).toBe('demo');
      expect(await page.getAttribute('#via', 'data-via')).toBe('cookie');
      expect(count, `visits after reload ${reload} on ${node}`).toBeGreaterThan(visits);
      // The chips list every node seen so far, the current one marked.
      expect(await text(page, '#nodes-seen li[aria-current="true"]')).toBe(node);
      visits = count;
      seen.add(node);
    }
    expect(seen.size).toBeGreaterThanOrEqual(NODES);
    expect([...seen].every((node) => cluster!.nodes.has(node))).toBe(true);
    expect(await page.locator('#nodes-seen li').count()).toBeGreaterThanOrEqual(NODES);
    await shot(page, 'page');
  });

  it('shows the dashboard: every node, and an active key per purpose', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${base}/dashboard`);
    await page.waitForFunction(
      ({ nodes, purposes }) =>
        document.querySelectorAll('#nodes tbody tr').length === nodes &&
        purposes.every((p) => (document.getElementById(`active-${p}`)?.textContent ?? '').startsWith(`${p}-`)) &&
        document.querySelectorAll('#audit tbody tr').length > 0,
      { nodes: NODES, purposes: [...PURPOSES] },
    );
    const rows = await page.locator('#nodes tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-node')));
    expect(rows.sort()).toEqual([...cluster!.nodes.keys()].sort());
    // One primary, and every node has loaded the current ring version.
    expect(await page.locator('#nodes tbody .badge.primary').count()).toBe(1);
    const version = (await text(page, '#ring-version')).replace(/^v/, '');
    await page.waitForFunction(
      (v) => [...document.querySelectorAll('#nodes [data-ring-version]')].every((cell) => cell.getAttribute('data-ring-version') === v),
      version,
    );
    expect(await page.locator('#live').getAttribute('data-state')).toBe('live');
    await shot(page, 'dashboard');
  });

  it('shows a rotation made with the CLI without a reload', async () => {
    const before = await text(page, '#active-sign');
    await page.evaluate(() => Object.assign(window, { keyfleetNoReload: true }));
    const rotation = await cluster!.cli(['rotate', '--purpose', 'sign']);
    expect(rotation.exitCode, rotation.output).toBe(0);
    const kid = /sign: rotated to (\S+)/.exec(rotation.output)?.[1];
    expect(kid, rotation.output).toMatch(/^sign-/);

    await page.waitForFunction((k) => document.getElementById('active-sign')?.textContent === k, kid, { timeout: 15_000 });
    await page.locator(`[data-purpose="sign"] tr[data-kid="${before}"][data-state="retired"]`).waitFor();
    await page.locator(`[data-purpose="sign"] tr[data-kid="${kid}"][data-state="active"]`).waitFor();
    await page.waitForFunction((k) => [...document.querySelectorAll('#audit tr[data-action="activate"]')].some((tr) => tr.textContent?.includes(k)), kid!);
    // The next signing key, published in the JWKS ahead of its use, with its publication time.
    const next = /sign: next key (\S+) staged and published/.exec(rotation.output)?.[1];
    await page.waitForFunction((k) => document.getElementById('next-sign')?.textContent === k, next, { timeout: 15_000 });
    expect(await text(page, '#next-published-sign')).toMatch(/^published .+ ago\)$/);
    expect(await page.evaluate(() => (window as unknown as { keyfleetNoReload?: boolean }).keyfleetNoReload)).toBe(true);
    expect(before).not.toBe(kid);
    await shot(page, 'dashboard-rotated');
  });

  it('never shows key material, tokens or cookies, and refuses the dashboard without a login', async () => {
    const admin = cluster!.redis.admin();
    let materials: string[];
    try {
      materials = JSON.parse((await admin.get('keyfleet:ring'))!).keys.map((key: { material: string }) => key.material);
    } finally {
      admin.disconnect();
    }
    const cookies = (await context.cookies()).map((cookie) => cookie.value);
    expect(cookies.length).toBeGreaterThanOrEqual(2);
    const data = await page.evaluate(() => fetch('/dashboard/data').then((response) => response.text()));
    for (const shown of [await page.content(), data]) {
      for (const material of materials) expect(shown).not.toContain(material);
      for (const value of cookies) expect(shown).not.toContain(value);
      expect(shown).not.toContain('demo-password');
    }

    const refused = await request(`${base}/dashboard/data`);
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('ERR_DASHBOARD_LOGIN_REQUIRED');
    const stranger = await browser!.newContext();
    try {
      const strangerPage = await stranger.newPage();
      const response = await strangerPage.goto(`${base}/dashboard`);
      expect(response?.status()).toBe(401);
      await strangerPage.locator('#access-message').filter({ hasText: 'Log in' }).waitFor();
      expect(await strangerPage.locator('#content').isHidden()).toBe(true);
    } finally {
      await stranger.close();
    }
  });
});
