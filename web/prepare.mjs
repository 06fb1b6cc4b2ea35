// `npm ci` / `npm install` run this (the `prepare` script): build the web UI into web/dist, which
// `sdstudio serve` serves. Where the dev dependencies were left out (`--omit=dev`), say so and go on:
// the server then answers / with how to build the UI.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import process from 'node:process';
import { fileURLToPath, URL } from 'node:url';

const vite = fileURLToPath(new URL('../node_modules/vite/bin/vite.js', import.meta.url));
if (!existsSync(vite)) {
  process.stderr.write(
    'sdstudio: web UI not built (Vite is not installed); `npm install`, then `npm run build:web`\n',
  );
  process.exit(0);
}
const root = fileURLToPath(new URL('..', import.meta.url));
const r = spawnSync(process.execPath, [vite, 'build', '--config', 'web/vite.config.ts'], {
  stdio: 'inherit',
  cwd: root,
});
process.exit(r.status ?? 1);
