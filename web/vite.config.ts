import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const root = fileURLToPath(new URL('.', import.meta.url));

/**
 * The web UI: `npm run build:web` writes static files to web/dist, which `sdstudio serve` serves at `/`.
 * `npm run dev:web` runs Vite's dev server against a running `sdstudio serve` (SDSTUDIO_URL, default
 * http://127.0.0.1:7860) by proxying the API routes.
 */
export default defineConfig({
  root,
  base: './',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: Object.fromEntries(
      ['/sdapi', '/api', '/internal'].map((p) => [p, process.env.SDSTUDIO_URL ?? 'http://127.0.0.1:7860']),
    ),
  },
});
