/** `sdstudio serve`'s flags: A1111's defaults and meanings, checked before anything starts. */
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { serveConfig } from '../../src/cli/commands/serve.js';
import { UserError } from '../../src/util/errors.js';

describe('sdstudio serve flags', () => {
  it('defaults to 127.0.0.1:7860 and A1111 folders under the data dir; --nowebui moves to 7861', () => {
    const { config, warnings } = serveConfig(['--data-dir', '/srv/sd']);
    expect(config).toMatchObject({
      host: '127.0.0.1',
      port: 7860,
      dataDir: resolve('/srv/sd'),
      apiAuth: null,
      subpath: '',
    });
    expect(config.dirs).toMatchObject({
      checkpoints: join('/srv/sd', 'models', 'Stable-diffusion'),
      vae: join('/srv/sd', 'models', 'VAE'),
      lora: join('/srv/sd', 'models', 'Lora'),
      embeddings: join('/srv/sd', 'embeddings'),
    });
    expect(config.bodyLimit).toBe(64 * 1024 * 1024);
    expect(warnings).toEqual([]);
    expect(serveConfig(['--nowebui']).config.port).toBe(7861);
    expect(serveConfig(['--nowebui', '--port', '9000']).config.port).toBe(9000);
    expect(serveConfig(['--ckpt-dir', '/m']).config.dirs.checkpoints).toBe(resolve('/m'));
  });

  it('--listen binds every interface and warns without --api-auth; --api-auth takes pairs', () => {
    const open = serveConfig(['--listen']);
    expect(open.config.host).toBe('0.0.0.0');
    expect(open.warnings).toHaveLength(1);
    expect(open.warnings[0]).toMatch(/--listen without --api-auth/);
    const closed = serveConfig(['--listen', '--api-auth', 'a:b,c:d:e']);
    expect(closed.warnings).toEqual([]);
    expect(closed.config.apiAuth).toEqual([
      { user: 'a', password: 'b' },
      { user: 'c', password: 'd:e' },
    ]);
    expect(closed.config.flags.api_auth).toBe('<hidden>');
  });

  it('CORS, subpath, body limit; bad values are one-line errors', () => {
    const c = serveConfig([
      '--cors-allow-origins',
      'https://a.test, https://b.test',
      '--subpath',
      'sd/',
      '--body-limit',
      '8',
    ]).config;
    expect(c.corsOrigins).toEqual(['https://a.test', 'https://b.test']);
    expect(c.subpath).toBe('/sd');
    expect(c.bodyLimit).toBe(8 * 1024 * 1024);
    for (const argv of [
      ['--port', '70000'],
      ['--port', 'x'],
      ['--api-auth', 'nocolon'],
      ['--body-limit', '0'],
      ['--cors-allow-origins-regex', '('],
    ]) {
      expect(() => serveConfig(argv), argv.join(' ')).toThrow(UserError);
    }
    expect(() => serveConfig(['--bogus'])).toThrow(/bogus/);
  });
});
