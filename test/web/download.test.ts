/**
 * The "no checkpoint" page as a newcomer meets it: Debian's Chromium against `sdstudio serve` with an
 * empty model folder; the download form fetches a checkpoint (from a server on 127.0.0.1, never the
 * internet), shows its progress, and the checkpoint is then selectable and generates.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasChromium, launchBrowser, noChromiumReason, openPage } from './helpers/browser.js';
import { buildWebOnce } from './helpers/build.js';
import { startServer, type RunningServer } from './helpers/serve.js';
import { tinyCheckpoint } from '../server/helpers.js';

if (!hasChromium) console.warn(noChromiumReason);

describe.skipIf(!hasChromium)('download a checkpoint from the empty page', () => {
  let files: Server;
  let filesUrl: string;
  let server: RunningServer;
  let browser: Browser;
  const bytes = readFileSync(tinyCheckpoint());
  const name = `downloaded-${basename(tinyCheckpoint())}`;

  beforeAll(async () => {
    // Sent slowly in pieces so the page has a download in progress to show.
    files = createServer((req, res) => {
      if (req.url !== `/${name}`) {
        res.writeHead(404).end('not here');
        return;
      }
      res.writeHead(200, { 'content-length': String(bytes.length) });
      const piece = Math.ceil(bytes.length / 8);
      let at = 0;
      const next = () => {
        if (at >= bytes.length) return void res.end();
        res.write(bytes.subarray(at, at + piece));
        at += piece;
        setTimeout(next, 150);
      };
      next();
    });
    await new Promise<void>((r) => files.listen(0, '127.0.0.1', r));
    filesUrl = `http://127.0.0.1:${(files.address() as AddressInfo).port}`;
    await buildWebOnce();
    server = await startServer({ checkpoint: false });
    browser = await launchBrowser();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await new Promise<void>((r) => files.close(() => r()));
  });

  it('says there is no checkpoint, refuses a bad source by name, downloads with progress, then generates', async () => {
    const { page, errors } = await openPage(browser, server.url);
    const banner = page.getByRole('alert').filter({ hasText: 'No checkpoint found' });
    await expect.poll(() => banner.count()).toBe(1);

    await page.getByLabel('Download a checkpoint').fill('not a source');
    await page.getByRole('button', { name: 'Download' }).click();
    await expect
      .poll(() => page.locator('.model-download [role="alert"]').textContent())
      .toContain('neither a URL nor a Hugging Face');

    await page.getByLabel('Download a checkpoint').fill(`${filesUrl}/${name}`);
    await page.getByRole('button', { name: 'Download' }).click();
    await expect.poll(() => page.getByRole('status', { name: 'Download progress' }).count()).toBe(1);
    await expect
      .poll(() => page.locator('#checkpoint option').allTextContents(), { timeout: 60_000 })
      .toContainEqual(expect.stringContaining(name.replace(/\.safetensors$/, '')));
    expect(await banner.count()).toBe(0);

    // The downloaded file is a working checkpoint.
    const screen = page.locator('main > div:not([hidden])');
    await page.locator('#txt2img-prompt').fill('downloaded model check');
    for (const [field, value] of [
      ['width', '64'],
      ['height', '64'],
      ['steps', '2'],
    ]) {
      await screen.locator(`input[name="${field}"]`).fill(value);
      await screen.locator(`input[name="${field}"]`).blur();
    }
    await page.getByRole('button', { name: 'Generate' }).click();
    const infotext = screen.getByLabel('Infotext');
    await infotext.waitFor({ timeout: 90_000 });
    expect(await infotext.textContent()).toContain(`Model: ${name.replace(/\.safetensors$/, '')}`);
    expect(errors.filter((e) => !/Failed to load resource/.test(e))).toEqual([]);
    await page.close();
  });
});
