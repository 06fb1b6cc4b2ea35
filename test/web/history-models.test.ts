/**
 * The History and Models screens as a person uses them: Debian's Chromium (playwright-core) against
 * the real `sdstudio serve` whose checkpoint folder holds two copies of the tiny checkpoint. History:
 * generate, reload the page and restart the server, find it, search, send to txt2img, re-run,
 * delete. Models: merge the two copies with progress, then pick and use the merged model.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/golden.js';
import { tinyCheckpoint } from '../server/helpers.js';
import { hasChromium, launchBrowser, noChromiumReason, openPage } from './helpers/browser.js';
import { buildWebOnce } from './helpers/build.js';
import { startServer, type RunningServer } from './helpers/serve.js';

if (!hasChromium) console.warn(noChromiumReason);

/** SDSTUDIO_SCREENSHOTS=DIR saves the screens' screenshots there (as browser.test.ts does). */
const SHOTS = process.env.SDSTUDIO_SCREENSHOTS ? resolve(repoRoot, process.env.SDSTUDIO_SCREENSHOTS) : null;

async function shot(page: Page, name: string, fullPage = false) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

const pngs = (dir: string) =>
  (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.png')).length;

describe.skipIf(!hasChromium)('History and Models screens in Chromium against sdstudio serve', () => {
  let server: RunningServer;
  let browser: Browser;
  let dataDir: string;

  beforeAll(async () => {
    await buildWebOnce();
    dataDir = mkdtempSync(join(tmpdir(), 'sdstudio-web-lib-'));
    const ckpts = join(dataDir, 'models', 'Stable-diffusion');
    mkdirSync(ckpts, { recursive: true });
    copyFileSync(tinyCheckpoint(), join(ckpts, 'copy-a.safetensors'));
    copyFileSync(tinyCheckpoint(), join(ckpts, 'copy-b.safetensors'));
    server = await startServer({ dataDir });
    browser = await launchBrowser();
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const visible = (page: Page) => page.locator('main > div:not([hidden])');
  const entries = (page: Page) => visible(page).getByRole('list', { name: 'History' }).getByRole('listitem');

  async function generate(page: Page, prompt: string) {
    await page.goto(server.url + '#txt2img');
    await page.locator('#txt2img-prompt').fill(prompt);
    for (const [name, value] of [
      ['width', '64'],
      ['height', '64'],
      ['steps', '2'],
    ]) {
      const input = visible(page).locator(`input[name="${name}"]`);
      await input.fill(value);
      await input.blur();
    }
    await page.getByRole('button', { name: 'Generate' }).click();
    const info = visible(page).getByLabel('Infotext');
    await expect.poll(() => info.textContent(), { timeout: 90_000 }).toContain(prompt);
    return (await info.textContent()) ?? '';
  }

  it('history: generate, reload and restart, search, send to txt2img/img2img, re-run, delete', async () => {
    const { page, errors } = await openPage(browser, server.url);
    const alpha = await generate(page, 'history check alpha');
    await generate(page, 'another bravo');
    const seed = /Seed: (\d+)/.exec(alpha)![1];

    await page.goto(server.url + '#history');
    await page.reload();
    await expect.poll(() => entries(page).count()).toBe(2);
    expect(await entries(page).first().getByLabel('Infotext').textContent()).toContain('another bravo');

    // The store survives a restart: the same entries come back.
    const port = Number(new URL(server.url).port);
    await server.close({ keepData: true });
    server = await startServer({ port, dataDir });
    await page.reload();
    await expect.poll(() => entries(page).count(), { timeout: 30_000 }).toBe(2);

    await visible(page).getByLabel('Search prompts').fill('ALPHA');
    await expect.poll(() => entries(page).count()).toBe(1);
    const entry = entries(page).first();
    expect(await entry.getByLabel('Infotext').textContent()).toBe(alpha);
    const thumb = entry.locator('.hist-thumbs img').first();
    await expect.poll(() => thumb.evaluate((img: { naturalWidth: number }) => img.naturalWidth)).toBe(64);
    await shot(page, 'history');

    await entry.getByRole('button', { name: 'Send to txt2img' }).click();
    await expect.poll(() => page.locator('#txt2img-prompt').inputValue()).toBe('history check alpha');
    expect(await visible(page).locator('input[name="seed"]').inputValue()).toBe(seed);
    expect(await visible(page).locator('input[name="steps"]').inputValue()).toBe('2');

    // Send to img2img: the image and the prompt.
    await page.goto(server.url + '#history');
    await visible(page).getByLabel('Search prompts').fill('alpha');
    await expect.poll(() => entries(page).count()).toBe(1);
    await entries(page).first().getByRole('button', { name: 'Send to img2img' }).click();
    await expect.poll(() => page.locator('#img2img-prompt').inputValue()).toBe('history check alpha');
    const init = visible(page).getByAltText('Init image');
    await expect.poll(() => init.evaluate((img: { naturalWidth: number }) => img.naturalWidth)).toBe(64);

    // Re-run: a second entry with the same prompt, the same seed, hence the same infotext.
    await page.goto(server.url + '#history');
    await visible(page).getByLabel('Search prompts').fill('alpha');
    await expect.poll(() => entries(page).count()).toBe(1);
    await entries(page).first().getByRole('button', { name: 'Re-run' }).click();
    await expect.poll(() => entries(page).count()).toBe(2);
    await expect
      .poll(
        () =>
          entries(page)
            .first()
            .getByLabel('Infotext')
            .textContent()
            .catch(() => ''),
        { timeout: 90_000 },
      )
      .toBe(alpha);

    // Delete, confirmed: the entry and its image file go, for good.
    const outputs = join(dataDir, 'outputs');
    const before = pngs(outputs);
    await entries(page).first().getByRole('button', { name: 'Delete' }).click();
    await entries(page).first().getByRole('button', { name: 'Cancel' }).click();
    expect(await entries(page).count()).toBe(2);
    await entries(page).first().getByRole('button', { name: 'Delete' }).click();
    await entries(page).first().getByRole('button', { name: 'Yes, delete' }).click();
    await expect.poll(() => entries(page).count()).toBe(1);
    expect(pngs(outputs)).toBe(before - 1);
    await page.reload();
    await visible(page).getByLabel('Search prompts').fill('alpha');
    await expect.poll(() => entries(page).count()).toBe(1);
    // Failed fetches while the server restarted are the browser's own console lines; nothing else.
    expect(
      errors.filter((e) => !/Failed to load resource: net::ERR_CONNECTION_(REFUSED|RESET)/.test(e)),
    ).toEqual([]);
    await page.close();
  });

  it('models: merge two checkpoints with progress, refuse bad input, then pick and use the merged model', async () => {
    const { page, errors } = await openPage(browser, server.url + '#models');
    const merger = visible(page).getByRole('form', { name: 'Checkpoint merger' });
    await expect
      .poll(() => page.locator('#merge-a option').allTextContents())
      .toContainEqual(expect.stringContaining('copy-a.safetensors'));
    const title = async (stem: string) =>
      (await page.locator('#merge-a option').allTextContents()).find((t) => t.startsWith(stem))!;
    await page.locator('#merge-a').selectOption(await title('copy-a'));
    await page.locator('#merge-b').selectOption(await title('copy-b'));
    await page.locator('#merge-m').fill('0.5');

    // Bad input first: a regex that does not compile and a name that exists are named, nothing runs.
    await page.locator('#merge-discard').fill('([unclosed');
    await page.locator('#merge-name').fill('merged-ui');
    await merger.getByRole('button', { name: 'Merge' }).click();
    const alert = visible(page).getByRole('alert');
    await expect.poll(() => alert.textContent()).toContain('discard_weights');
    await page.locator('#merge-discard').fill('^model_ema\\.');
    await page.locator('#merge-name').fill('copy-b');
    await merger.getByRole('button', { name: 'Merge' }).click();
    await expect.poll(() => alert.textContent()).toMatch(/custom_name.*exists/);

    await page.locator('#merge-name').fill('merged-ui');
    await merger.getByLabel('Save as float16').check();
    await merger.getByRole('button', { name: 'Merge' }).click();
    const bar = visible(page).getByRole('progressbar');
    await expect
      .poll(() => visible(page).getByRole('status').textContent(), { timeout: 60_000 })
      .toContain('merged-ui.safetensors');
    // The bar shows the tensor count of the merge it followed, to the end.
    expect(await bar.getAttribute('aria-valuenow')).toBe('100');
    expect(await bar.textContent()).toMatch(/merge: succeeded · merging (\d+)\/\1/);
    await shot(page, 'models');

    // The merged model is in the header's checkpoint list at once: inspect it, then generate with it.
    const merged = (await page.locator('#checkpoint option').allTextContents()).find((t) =>
      t.startsWith('merged-ui.safetensors'),
    );
    expect(merged).toBeDefined();
    const toolkit = visible(page).getByRole('form', { name: 'Model toolkit' });
    await page.locator('#tool-model').selectOption(merged!);
    await toolkit.getByRole('button', { name: 'Inspect' }).click();
    await expect
      .poll(() => visible(page).getByLabel('Inspect report').textContent(), { timeout: 30_000 })
      .toContain('sd_merge_recipe');

    // A file copied in by hand appears after a rescan.
    copyFileSync(tinyCheckpoint(), join(dataDir, 'models', 'Stable-diffusion', 'by-hand.safetensors'));
    await visible(page).getByRole('button', { name: 'Rescan model folders' }).click();
    await expect
      .poll(() => page.locator('#merge-a option').allTextContents(), { timeout: 30_000 })
      .toContainEqual(expect.stringContaining('by-hand.safetensors'));

    await page.locator('#checkpoint').selectOption(merged!);
    await expect
      .poll(() => page.getByRole('status', { name: 'Loading Checkpoint' }).count(), { timeout: 60_000 })
      .toBe(0);
    const text = await generate(page, 'made with the merged model');
    expect(text).toContain('Model: merged-ui');
    // The browser logs each refused request (the two 422s above); nothing else went wrong.
    expect(errors).toEqual(Array(2).fill(expect.stringContaining('status of 422')));
    await page.close();
  });

  it('History and Models are usable 375 px wide', async () => {
    for (const screen of ['history', 'models']) {
      const { page, errors } = await openPage(browser, `${server.url}#${screen}`, {
        width: 375,
        height: 740,
      });
      await page.locator('#checkpoint').waitFor();
      if (screen === 'history') await entries(page).first().waitFor();
      const width = Number(await page.evaluate('document.documentElement.scrollWidth'));
      expect(width, screen).toBeLessThanOrEqual(375);
      if (screen === 'history') await shot(page, 'history-phone', true);
      expect(errors, screen).toEqual([]);
      await page.close();
    }
  });
});
