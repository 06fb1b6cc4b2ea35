/**
 * The web UI as a person uses it: Debian's Chromium (playwright-core) against the real
 * `sdstudio serve` with the tiny checkpoint. Sizes are small (64²) so each generation takes seconds.
 * SDSTUDIO_WEB_URL=http://… runs the same checks against a server that is already running.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { basename, join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { float32ArrayToTensor } from '../../src/formats/dtype.js';
import { readSafetensorsHeader, writeSafetensors } from '../../src/formats/safetensors.js';
import { ClipTokenizer } from '../../src/prompt/tokenizer.js';
import { clipVocabPath, repoRoot } from '../helpers/golden.js';
import { hasChromium, launchBrowser, noChromiumReason, openPage } from './helpers/browser.js';
import { buildWebOnce } from './helpers/build.js';
import { startServer, type RunningServer } from './helpers/serve.js';
import { tinyCheckpoint } from '../server/helpers.js';

if (!hasChromium) console.warn(noChromiumReason);

/**
 * SDSTUDIO_SCREENSHOTS=DIR saves a screenshot of each screen there (the README's are made with
 * `SDSTUDIO_SCREENSHOTS=docs/screenshots npx vitest run test/web/browser.test.ts`).
 */
const SHOTS = process.env.SDSTUDIO_SCREENSHOTS ? resolve(repoRoot, process.env.SDSTUDIO_SCREENSHOTS) : null;

async function shot(page: Page, name: string, fullPage = false) {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage });
}

describe.skipIf(!hasChromium)('web UI in Chromium against sdstudio serve', () => {
  let server: RunningServer | null = null;
  let url: string;
  let browser: Browser;

  beforeAll(async () => {
    url = process.env.SDSTUDIO_WEB_URL ?? '';
    if (!url) {
      // The UI of this checkout, not whatever build was left in web/dist.
      await buildWebOnce();
      server = await startServer();
      url = server.url;
    }
    browser = await launchBrowser();
    if (SHOTS) mkdirSync(SHOTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  const prompt = (page: Page, mode = 'txt2img') => page.locator(`#${mode}-prompt`);
  const visible = (page: Page) => page.locator('main > div:not([hidden])');

  /** Small, fast settings on the visible screen. */
  async function smallJob(page: Page, steps = 3) {
    const screen = visible(page);
    for (const [name, value] of [
      ['width', '64'],
      ['height', '64'],
      ['steps', String(steps)],
    ]) {
      const input = screen.locator(`input[name="${name}"]`);
      await input.fill(value);
      await input.blur();
    }
  }

  async function decode(dataUrl: string) {
    const img = sharp(Buffer.from(dataUrl.replace(/^data:[^,]*,/, ''), 'base64'));
    const { data, info } = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height };
  }

  it.skipIf(Boolean(process.env.SDSTUDIO_WEB_URL))(
    'the first screen’s JavaScript is ≤ 500 kB gzipped',
    () => {
      const assets = join(repoRoot, 'web', 'dist', 'assets');
      const js = readdirSync(assets).filter((f) => f.endsWith('.js'));
      expect(js.length).toBeGreaterThan(0);
      const gz = js.reduce((n, f) => n + gzipSync(readFileSync(join(assets, f))).length, 0);
      expect(gz).toBeLessThanOrEqual(500 * 1024);
    },
  );

  it('loads fast, with no console errors, and shows the server lists', async () => {
    const { page, errors } = await openPage(browser, url);
    await expect
      .poll(() => page.locator('#checkpoint option').allTextContents())
      .toContainEqual(expect.stringContaining(basename(tinyCheckpoint())));
    const samplers = await visible(page).locator('select[name="sampler_name"] option').allTextContents();
    expect(samplers).toContain('Euler a');
    // Runs in the page (a string: this file is compiled without the DOM library). The best of three
    // loads: the figure is the page's weight, not the load the other test workers put on the machine.
    const loads: number[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) await page.reload({ waitUntil: 'load' });
      loads.push(
        Number(
          await page.evaluate(
            "(() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; })()",
          ),
        ),
      );
    }
    const load = Math.min(...loads);
    // Every screen stays in the page: element ids (labels point at them) must still be unique.
    const duplicateIds = await page.evaluate(
      "(() => { const ids = [...document.querySelectorAll('[id]')].map((e) => e.id); return ids.filter((id, i) => ids.indexOf(id) !== i); })()",
    );
    expect(duplicateIds).toEqual([]);
    expect(load).toBeGreaterThan(0);
    expect(load).toBeLessThan(1000);
    await shot(page, 'txt2img-empty');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('txt2img: type a prompt, Generate, watch progress, see the image and its infotext; ♻ reuses the seed', async () => {
    const { page, errors } = await openPage(browser, url);
    await prompt(page).fill('a red cube on a table');
    await smallJob(page, 4);
    await visible(page).locator('select[name="sampler_name"]').selectOption({ label: 'Euler a' });
    await page.getByRole('button', { name: 'Generate' }).click();
    await expect.poll(() => page.getByRole('progressbar').count()).toBe(1);
    const infotext = visible(page).getByLabel('Infotext');
    await infotext.waitFor({ timeout: 90_000 });
    const text = await infotext.textContent();
    expect(text).toContain('a red cube on a table');
    expect(text).toMatch(/Steps: 4, Sampler: Euler a/);
    expect(text).toContain('Size: 64x64');
    expect(text).toContain(`Model: ${basename(tinyCheckpoint()).replace(/\.[^.]+$/, '')}`);
    const seed = Number(/Seed: (\d+)/.exec(text!)![1]);
    const src = await visible(page).locator('img.result').getAttribute('src');
    const img = await decode(src!);
    expect([img.width, img.height]).toEqual([64, 64]);
    await shot(page, 'txt2img');

    await visible(page).getByRole('button', { name: 'Reuse last seed' }).click();
    await expect.poll(() => visible(page).locator('input[name="seed"]').inputValue()).toBe(String(seed));
    expect(errors).toEqual([]);
    await page.close();
  });

  it('hires fix: the panel doubles a 64² image to 128² with the second pass in the infotext', async () => {
    const { page, errors } = await openPage(browser, url);
    await prompt(page).fill('hires check');
    await smallJob(page, 2);
    const screen = visible(page);
    await screen.getByText('Hires. fix', { exact: true }).click();
    await screen.getByLabel('Enable hires. fix').check();
    await expect.poll(() => screen.getByText('from 64x64 to 128x128').count()).toBe(1);
    await screen.locator('input[name="hr_second_pass_steps"]').fill('2');
    await screen.locator('input[name="hr_second_pass_steps"]').blur();
    await page.getByRole('button', { name: 'Generate' }).click();
    const infotext = screen.getByLabel('Infotext');
    await infotext.waitFor({ timeout: 90_000 });
    const text = (await infotext.textContent()) ?? '';
    expect(text).toContain('Denoising strength: 0.7');
    expect(text).toContain('Hires upscale: 2');
    expect(text).toContain('Hires steps: 2');
    const out = await decode((await screen.locator('img.result').getAttribute('src'))!);
    expect([out.width, out.height]).toEqual([128, 128]);
    // Sent on, img2img takes the image's own size, not the first pass's.
    await screen.getByRole('button', { name: 'Send to img2img' }).click();
    await expect.poll(() => visible(page).locator('input[name="width"]').inputValue()).toBe('128');
    expect(await visible(page).locator('input[name="height"]').inputValue()).toBe('128');
    expect(await prompt(page, 'img2img').inputValue()).toBe('hires check');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('queue three jobs: they run one after the other, each kept with its own prompt', async () => {
    const { page, errors } = await openPage(browser, url);
    const screen = visible(page);
    // A long first job, so the next two are queued behind it for sure; it is interrupted once they are.
    await smallJob(page, 150);
    await prompt(page).fill('queued job 1');
    await page.getByRole('button', { name: 'Generate' }).click();
    // Sampling has begun (the model is loaded): interrupting it later still gives an image.
    await expect
      .poll(async () => Number((await page.getByRole('progressbar').getAttribute('aria-valuenow')) ?? 0), {
        timeout: 60_000,
      })
      .toBeGreaterThan(0);
    await smallJob(page, 3);
    await prompt(page).fill('queued job 2');
    await screen.getByRole('button', { name: 'Queue' }).click();
    await prompt(page).fill('queued job 3');
    await prompt(page).press('Control+Enter');
    const queued = screen.getByRole('list', { name: 'Queued jobs' }).getByRole('listitem');
    await expect
      .poll(() => queued.allTextContents())
      .toEqual([expect.stringContaining('queued job 2'), expect.stringContaining('queued job 3')]);
    await shot(page, 'queue');
    await screen.getByRole('button', { name: 'Interrupt' }).click();
    const history = screen.getByRole('list', { name: 'Earlier jobs' }).getByRole('listitem');
    await expect.poll(() => history.count(), { timeout: 90_000 }).toBe(3);
    await page.getByRole('button', { name: 'Generate' }).waitFor();
    expect(await screen.getByRole('list', { name: 'Queued jobs' }).count()).toBe(0);
    // Newest first: job 3, 2, 1 — each result shows its own infotext.
    for (const [i, n] of [3, 2, 1].entries()) {
      await history.nth(i).click();
      await expect.poll(() => screen.getByLabel('Infotext').textContent()).toContain(`queued job ${n}`);
    }
    expect(errors).toEqual([]);
    await page.close();
  });

  it('interrupt stops a long run and the page is ready again', async () => {
    const { page, errors } = await openPage(browser, url);
    await prompt(page).fill('a long run');
    await smallJob(page, 150);
    await page.getByRole('button', { name: 'Generate' }).click();
    const bar = page.getByRole('progressbar');
    await expect
      .poll(async () => Number((await bar.getAttribute('aria-valuenow').catch(() => '0')) ?? 0), {
        timeout: 60_000,
      })
      .toBeGreaterThan(0);
    const started = Date.now();
    await visible(page).getByRole('button', { name: 'Interrupt' }).click();
    await visible(page).getByRole('button', { name: 'Generate' }).waitFor({ timeout: 60_000 });
    expect(Date.now() - started).toBeLessThan(60_000);
    const text = (await visible(page).getByLabel('Infotext').textContent()) ?? '';
    expect(text).toContain('a long run');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('PNG info: choose a generated PNG, read its parameters, send them to txt2img', async () => {
    const res = await fetch(new URL('sdapi/v1/txt2img', url), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        prompt: 'png info check',
        negative_prompt: 'ugly',
        steps: 2,
        width: 64,
        height: 72,
        seed: 777,
        cfg_scale: 5.5,
      }),
    });
    expect(res.status).toBe(200);
    const png = Buffer.from(((await res.json()) as { images: string[] }).images[0], 'base64');

    const { page, errors } = await openPage(browser, url + '#pnginfo');
    await visible(page)
      .locator('input[type="file"]')
      .setInputFiles({ name: 'x.png', mimeType: 'image/png', buffer: png });
    const info = visible(page).getByLabel('Infotext');
    await info.waitFor();
    expect(await info.textContent()).toContain('png info check');
    await shot(page, 'pnginfo');
    await visible(page).getByRole('button', { name: 'Send to txt2img' }).click();
    await expect.poll(() => prompt(page).inputValue()).toBe('png info check');
    const screen = visible(page);
    expect(await page.locator('#txt2img-negative').inputValue()).toBe('ugly');
    expect(await screen.locator('input[name="steps"]').inputValue()).toBe('2');
    expect(await screen.locator('input[name="width"]').inputValue()).toBe('64');
    expect(await screen.locator('input[name="height"]').inputValue()).toBe('72');
    expect(await screen.locator('input[name="seed"]').inputValue()).toBe('777');
    expect(await screen.locator('input[name="cfg_scale"]').inputValue()).toBe('5.5');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('inpaint: send a result to inpaint, paint a mask, generate; the unmasked part is unchanged', async () => {
    const { page, errors } = await openPage(browser, url);
    await prompt(page).fill('inpaint source');
    await smallJob(page, 3);
    await page.getByRole('button', { name: 'Generate' }).click();
    await visible(page).getByLabel('Infotext').waitFor({ timeout: 90_000 });
    const source = await decode((await visible(page).locator('img.result').getAttribute('src'))!);
    await visible(page).getByRole('button', { name: 'Send to inpaint' }).click();

    const canvas = visible(page).getByLabel('Mask', { exact: true });
    await canvas.waitFor();
    const box = (await canvas.boundingBox())!;
    // Paint the left third, top to bottom.
    await page.mouse.move(box.x + box.width * 0.1, box.y + 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width * 0.1, box.y + box.height - 2, { steps: 10 });
    await page.mouse.up();
    await visible(page).locator('input[name="mask_blur"]').fill('0');
    await visible(page).locator('input[name="mask_blur"]').blur();
    await visible(page).locator('input[name="denoising_strength"]').fill('1');
    await visible(page).locator('input[name="denoising_strength"]').blur();
    await prompt(page, 'img2img').fill('something else');
    await shot(page, 'inpaint', true);
    await page.getByRole('button', { name: 'Generate' }).click();
    const info = visible(page).getByLabel('Infotext');
    await info.waitFor({ timeout: 90_000 });
    expect(await info.textContent()).toContain('Mask blur: 0');
    const out = await decode((await visible(page).locator('img.result').getAttribute('src'))!);
    expect([out.width, out.height]).toEqual([source.width, source.height]);
    // Right half: never painted, must be the source pixels; the painted column must have changed.
    let rightDiff = 0;
    let leftDiff = 0;
    for (let y = 0; y < out.height; y++) {
      for (let x = 0; x < out.width; x++) {
        for (let c = 0; c < 3; c++) {
          const i = (y * out.width + x) * 3 + c;
          const d = Math.abs(out.data[i] - source.data[i]);
          if (x >= out.width / 2) rightDiff = Math.max(rightDiff, d);
          else leftDiff += d;
        }
      }
    }
    expect(rightDiff).toBe(0);
    expect(leftDiff).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('settings: change an option, apply, and find it after a reload', async () => {
    const { page, errors } = await openPage(browser, url + '#settings');
    const input = page.locator('#opt-CLIP_stop_at_last_layers');
    await input.waitFor();
    const before = await input.inputValue();
    const next = before === '2' ? '1' : '2';
    await input.fill(next);
    await page.getByRole('button', { name: /Apply settings/ }).click();
    await page.getByRole('status').filter({ hasText: 'Saved 1 setting' }).waitFor();
    await shot(page, 'settings');
    await page.reload();
    await page.locator('#opt-CLIP_stop_at_last_layers').waitFor();
    expect(await page.locator('#opt-CLIP_stop_at_last_layers').inputValue()).toBe(next);
    // Put it back for the other tests.
    await page.locator('#opt-CLIP_stop_at_last_layers').fill(before);
    await page.getByRole('button', { name: /Apply settings/ }).click();
    await page.getByRole('status').waitFor();
    expect(errors).toEqual([]);
    await page.close();
  });

  it.skipIf(Boolean(process.env.SDSTUDIO_WEB_URL))(
    'a server that went away: the page says so and reconnects by itself when it is back',
    async () => {
      const { page, errors } = await openPage(browser, url);
      await page.locator('#checkpoint').waitFor();
      const port = Number(new URL(url).port);
      const dataDir = server!.dataDir;
      await server!.close({ keepData: true });
      await prompt(page).fill('while the server is away');
      await page.getByRole('button', { name: 'Generate' }).click();
      const banner = page.locator('.banner');
      await expect.poll(() => banner.textContent()).toContain('does not answer');
      server = await startServer({ port, dataDir });
      await expect.poll(() => banner.count(), { timeout: 30_000 }).toBe(0);
      await page.getByRole('button', { name: 'Generate' }).waitFor();
      // Failed fetches while it was away are the browser's own console lines; nothing else.
      expect(errors.filter((e) => !/Failed to load resource|ERR_CONNECTION_REFUSED/.test(e))).toEqual([]);
      await page.close();
    },
  );

  it.skipIf(Boolean(process.env.SDSTUDIO_WEB_URL))(
    'prompt editor: token counter from the server, syntax colours, LoRA and embedding completion, extra-networks cards, size presets',
    async () => {
      // A LoRA with kohya metadata and a preview beside it, and a 5-vector embedding, as a user drops them in.
      const f32 = (shape: number[]) =>
        float32ArrayToTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01), shape);
      const dataDir = server!.dataDir;
      mkdirSync(join(dataDir, 'models', 'Lora'), { recursive: true });
      await writeSafetensors(
        join(dataDir, 'models', 'Lora', 'brass_style.safetensors'),
        [['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', f32([8, 32])]],
        { ss_network_dim: '8', ss_tag_frequency: JSON.stringify({ '5_brass': { brass: 9, steampunk: 4 } }) },
      );
      const previewPng = await sharp({
        create: { width: 16, height: 16, channels: 3, background: '#b08d57' },
      })
        .png()
        .toBuffer();
      writeFileSync(join(dataDir, 'models', 'Lora', 'brass_style.png'), previewPng);
      mkdirSync(join(dataDir, 'embeddings'), { recursive: true });
      // As wide as the checkpoint's text encoder, so the loaded model takes it.
      const width = (await readSafetensorsHeader(tinyCheckpoint())).tensors.find((t) =>
        t.name.endsWith('token_embedding.weight'),
      )!.shape[1];
      await writeSafetensors(join(dataDir, 'embeddings', 'fiveveclook.safetensors'), [
        ['emb_params', f32([5, width])],
      ]);
      expect((await fetch(new URL('sdapi/v1/refresh-loras', url), { method: 'POST' })).status).toBe(200);
      const tok = await ClipTokenizer.load(clipVocabPath());

      const { page, errors } = await openPage(browser, url);
      const screen = visible(page);
      const counter = screen.getByLabel('Prompt tokens', { exact: true });
      const negCounter = screen.getByLabel('Negative prompt tokens');
      await expect.poll(() => counter.textContent()).toBe('0/75');
      await prompt(page).fill('a red cube, (shiny:1.2) BREAK table');
      await expect.poll(() => counter.textContent()).toBe(`${75 + tok.encode('table').length}/150`);
      await page.locator('#txt2img-negative').fill('blurry <lora:brass_style:1>');
      await expect.poll(() => negCounter.textContent()).toBe(`${tok.encode('blurry').length}/75`);
      const overlay = screen.locator('.prompt-overlay').first();
      expect(await overlay.locator('.tok-weight').textContent()).toBe(':1.2');
      expect(await overlay.locator('.tok-break').textContent()).toBe('BREAK');
      // The overlay wraps as the textarea does: same width and height for a long, wrapping prompt.
      await prompt(page).fill(
        `${'a very (detailed:1.3) [castle:fortress:0.4] <lora:x:1>, '.repeat(12)}\nnext line, ${'w'.repeat(300)}`,
      );
      const box = (sel: string) =>
        page
          .locator(sel)
          .first()
          .evaluate((el: { scrollHeight: number; clientWidth: number }) => [el.scrollHeight, el.clientWidth]);
      const [overlayBox, textareaBox] = [await box('.prompt-overlay'), await box('#txt2img-prompt')];
      expect(overlayBox[0]).toBeGreaterThan(100);
      expect(overlayBox).toEqual(textareaBox);

      // Typing `<lora:br` offers the file; Enter puts the whole tag in.
      await prompt(page).fill('');
      await prompt(page).pressSequentially('a lamp <lora:br');
      const options = screen.getByRole('listbox', { name: 'Prompt suggestions' }).getByRole('option');
      await expect.poll(() => options.allTextContents()).toEqual([expect.stringContaining('brass_style')]);
      await prompt(page).press('Enter');
      expect(await prompt(page).inputValue()).toBe('a lamp <lora:brass_style:1>');
      await expect.poll(() => overlay.locator('.tok-network').textContent()).toBe('<lora:brass_style:1>');
      // A bare word completes an embedding; the counter gives it its 5 vectors.
      await prompt(page).pressSequentially(' fivevec');
      await expect.poll(() => options.allTextContents()).toEqual([expect.stringContaining('fiveveclook')]);
      // The tag takes no tokens; the half-typed word is plain text until completed.
      await expect.poll(() => counter.textContent()).toBe(`${tok.encode('a lamp fivevec').length}/75`);
      await shot(page, 'prompt-editor');
      await prompt(page).press('Tab');
      expect(await prompt(page).inputValue()).toBe('a lamp <lora:brass_style:1> fiveveclook');
      await expect.poll(() => counter.textContent()).toBe(`${tok.encode('a lamp').length + 5}/75`);
      await expect.poll(() => overlay.locator('.tok-embedding').textContent()).toBe('fiveveclook');

      // Extra networks: the LoRA card with its preview, metadata and tags; search; a click inserts.
      await prompt(page).fill('a lamp');
      await screen.getByRole('button', { name: 'Extra networks' }).click();
      const panel = screen.getByRole('region', { name: 'Extra networks' });
      await panel.getByRole('button', { name: 'Refresh extra networks' }).click();
      const card = panel.getByRole('button', { name: /brass_style/ });
      await card.waitFor();
      expect(await card.textContent()).toContain('rank 8');
      expect(await card.textContent()).toContain('brass, steampunk');
      const img = card.locator('img');
      await expect.poll(() => img.evaluate((el: { naturalWidth: number }) => el.naturalWidth)).toBe(16);
      await panel.getByLabel('Search extra networks').fill('steampunk');
      expect(await panel.getByRole('button', { name: /brass_style/ }).count()).toBe(1);
      await panel.getByLabel('Search extra networks').fill('no such thing');
      await panel.getByText('Nothing matches.').waitFor();
      await panel.getByLabel('Search extra networks').fill('');
      await shot(page, 'extra-networks');
      await card.click();
      expect(await prompt(page).inputValue()).toBe('a lamp, <lora:brass_style:1>');
      // Clicked again, it comes out again (as A1111's cards do); a third click puts it back.
      await card.click();
      expect(await prompt(page).inputValue()).toBe('a lamp');
      await card.click();
      expect(await prompt(page).inputValue()).toBe('a lamp, <lora:brass_style:1>');
      await panel.getByRole('tab', { name: /Textual Inversion/ }).click();
      await panel.getByRole('button', { name: /fiveveclook/ }).click();
      expect(await prompt(page).inputValue()).toBe('a lamp, <lora:brass_style:1>, fiveveclook');
      await panel.getByRole('tab', { name: /Checkpoints/ }).click();
      const ckpt = panel.getByRole('button', {
        name: new RegExp(basename(tinyCheckpoint()).replace(/\.[^.]+$/, '')),
      });
      await ckpt.click();
      await expect.poll(() => ckpt.getAttribute('aria-pressed')).toBe('true');

      // Size presets, beside the swap button.
      await screen.getByLabel('Size preset').selectOption('768x512');
      expect(await screen.locator('input[name="width"]').inputValue()).toBe('768');
      expect(await screen.locator('input[name="height"]').inputValue()).toBe('512');
      // Typed sizes snap to multiples of 8.
      await screen.locator('input[name="width"]').fill('515');
      await screen.locator('input[name="width"]').blur();
      expect(await screen.locator('input[name="width"]').inputValue()).toBe('512');
      expect(errors).toEqual([]);
      await page.close();
    },
  );

  it('styles: save the prompts as a style, see it listed, apply it into the prompts', async () => {
    const { page, errors } = await openPage(browser, url);
    const screen = visible(page);
    const name = `castle style ${Date.now()}`;
    await prompt(page).fill('a castle on a hill');
    await page.locator('#txt2img-negative').fill('blurry');
    await screen.getByRole('button', { name: 'Save style' }).click();
    await screen.getByLabel('Style name').fill(name);
    await screen.getByRole('button', { name: 'Save', exact: true }).click();
    const chip = screen.getByRole('group', { name: 'Styles' }).getByLabel(name);
    await chip.waitFor();
    const listed = (await (await fetch(new URL('sdapi/v1/prompt-styles', url))).json()) as {
      name: string;
      prompt: string;
      negative_prompt: string;
    }[];
    expect(listed).toContainEqual({ name, prompt: 'a castle on a hill', negative_prompt: 'blurry' });
    await prompt(page).fill('a boat');
    await page.locator('#txt2img-negative').fill('');
    await chip.check();
    await screen.getByRole('button', { name: 'Apply styles' }).click();
    expect(await prompt(page).inputValue()).toBe('a boat, a castle on a hill');
    expect(await page.locator('#txt2img-negative').inputValue()).toBe('blurry');
    expect(await chip.isChecked()).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('Skip ends the current image of a batch early; the next one runs', async () => {
    const { page, errors } = await openPage(browser, url);
    const screen = visible(page);
    await prompt(page).fill('skip check');
    await smallJob(page, 1000);
    await screen.locator('input[name="n_iter"]').fill('2');
    await screen.locator('input[name="n_iter"]').blur();
    await page.getByRole('button', { name: 'Generate' }).click();
    const bar = page.getByRole('progressbar');
    const text = async () => (await bar.textContent().catch(() => '')) ?? '';
    const firstImageStep = async () => Number(/Image 1\/2 · Step (\d+)\//.exec(await text())?.[1] ?? -1);
    // The sampling speed of the first image, measured over a few steps.
    await expect.poll(firstImageStep, { timeout: 60_000 }).toBeGreaterThan(0);
    const [s0, t0] = [await firstImageStep(), Date.now()];
    await expect.poll(firstImageStep, { timeout: 60_000 }).toBeGreaterThan(s0 + 4);
    const [s1, t1] = [await firstImageStep(), Date.now()];
    await screen.getByRole('button', { name: 'Skip' }).click();
    const skipped = Date.now();
    await expect.poll(text, { timeout: 60_000 }).toMatch(/Image 2\/2/);
    // Far sooner than the first image's remaining steps would have taken.
    const rest = ((1000 - s1) * (t1 - t0)) / (s1 - s0);
    expect(Date.now() - skipped).toBeLessThan(rest / 2);
    await screen.getByRole('button', { name: 'Interrupt' }).click();
    await screen.getByRole('button', { name: 'Generate' }).waitFor({ timeout: 60_000 });
    // Both images of the batch came back: the skipped one early, the second interrupted.
    expect(await screen.locator('.thumbs img').count()).toBeGreaterThanOrEqual(2);
    await screen.locator('input[name="n_iter"]').fill('1');
    await screen.locator('input[name="n_iter"]').blur();
    expect(errors).toEqual([]);
    await page.close();
  });

  it('is usable 375 px wide: nothing wider than the screen, Generate reachable', async () => {
    for (const screen of ['txt2img', 'img2img', 'pnginfo', 'settings']) {
      const { page, errors } = await openPage(browser, `${url}#${screen}`, { width: 375, height: 740 });
      await page.locator('#checkpoint').waitFor();
      const width = Number(await page.evaluate('document.documentElement.scrollWidth'));
      expect(width, screen).toBeLessThanOrEqual(375);
      if (screen === 'txt2img') {
        await expect(visible(page).getByRole('button', { name: 'Generate' }).isVisible()).resolves.toBe(true);
        await shot(page, 'txt2img-phone', true);
        // The extra-networks panel fits too.
        await visible(page).getByRole('button', { name: 'Extra networks' }).click();
        await visible(page).getByRole('region', { name: 'Extra networks' }).waitFor();
        expect(Number(await page.evaluate('document.documentElement.scrollWidth'))).toBeLessThanOrEqual(375);
      }
      expect(errors, screen).toEqual([]);
      await page.close();
    }
  });
});
