/** --api-auth on every route (401 + WWW-Authenticate, constant-time compare), CORS flags, --subpath. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, makeDataDir, startServer, type TestServer } from './helpers.js';

let server: TestServer;
let open: TestServer;
const basic = (u: string, p: string) => ({
  authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`,
});

beforeAll(async () => {
  server = await startServer(makeDataDir(false), {
    apiAuth: [
      { user: 'alice', password: 's3cret' },
      { user: 'bob', password: 'pa:ss' },
    ],
    corsOrigins: ['https://www.painthua.com'],
    corsOriginRegex: 'https://.*\\.example\\.org',
    subpath: '/sd',
  });
  open = await startServer(makeDataDir(false));
});
afterAll(async () => {
  await server?.close();
  await open?.close();
});

describe('auth', () => {
  it('every route needs the credentials; 401 says why and asks for Basic', async () => {
    for (const path of [
      '/sd/sdapi/v1/options',
      '/sd/sdapi/v1/loras',
      '/sd/api/v1/jobs',
      '/sd/openapi.json',
      '/sd/sdapi/v1/progress',
    ]) {
      const none = await call(server.url, path);
      expect(none.status, path).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      expect(none.body).toEqual({
        error: 'HTTPException',
        detail: 'Not authenticated',
        body: '',
        errors: '',
      });
      const wrong = await call(server.url, path, { headers: basic('alice', 'nope') });
      expect(wrong.status).toBe(401);
      expect(wrong.body.detail).toBe('Incorrect username or password');
      expect((await call(server.url, path, { headers: basic('alice', 's3cret') })).status, path).toBe(200);
    }
    expect((await call(server.url, '/sd/sdapi/v1/interrupt', { method: 'POST' })).status).toBe(401);
    expect((await call(server.url, '/sd/sdapi/v1/txt2img', { body: { prompt: 'x' } })).status).toBe(401);
    // The second pair, with a colon in the password.
    expect((await call(server.url, '/sd/sdapi/v1/options', { headers: basic('bob', 'pa:ss') })).status).toBe(
      200,
    );
    expect((await call(server.url, '/sd/sdapi/v1/options', { headers: basic('bob', 's3cret') })).status).toBe(
      401,
    );
    expect(
      (await call(server.url, '/sd/sdapi/v1/options', { headers: { authorization: 'Bearer x' } })).status,
    ).toBe(401);
  });

  it('without --api-auth nothing asks for credentials', async () => {
    const r = await call(open.url, '/sdapi/v1/options');
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('cors and subpath', () => {
  it('allows the listed origins and the regex, with credentials; not others', async () => {
    const auth = basic('alice', 's3cret');
    const ok = await call(server.url, '/sd/sdapi/v1/options', {
      headers: { ...auth, origin: 'https://www.painthua.com' },
    });
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://www.painthua.com');
    expect(ok.headers.get('access-control-allow-credentials')).toBe('true');
    const re = await call(server.url, '/sd/sdapi/v1/options', {
      headers: { ...auth, origin: 'https://app.example.org' },
    });
    expect(re.headers.get('access-control-allow-origin')).toBe('https://app.example.org');
    const no = await call(server.url, '/sd/sdapi/v1/options', {
      headers: { ...auth, origin: 'https://evil.test' },
    });
    expect(no.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(server.url + '/sd/sdapi/v1/txt2img', {
      method: 'OPTIONS',
      headers: { origin: 'https://www.painthua.com', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBeLessThan(300);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://www.painthua.com');
  });

  it('serves everything under --subpath only', async () => {
    const auth = basic('alice', 's3cret');
    expect((await call(server.url, '/sdapi/v1/options', { headers: auth })).status).toBe(404);
    expect((await call(server.url, '/sd/sdapi/v1/sd-models', { headers: auth })).body).toEqual([]);
  });
});
