/**
 * SD Studio's version, read once from package.json (the same path from src/ under tsx and from
 * dist/ after a build), for `sdstudio --version` and the infotext's `Version: sdstudio-X`.
 */
import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
    cached = pkg.version;
  }
  return cached;
}

/** What the infotext's Version key says for images we make. */
export function infotextVersion(): string {
  return `sdstudio-${packageVersion()}`;
}
