import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  COMMON_USAGE,
  HIRES_USAGE,
  IMG2IMG_USAGE,
  OPTIONS,
  PARAM_FLAGS,
  flagNameOf,
  paramsFromFlags,
  parseGenerateArgs,
  type Values,
} from '../../src/cli/generate-flags.js';
import { FIELDS, SETTINGS, type FieldSpec } from '../../src/params/fields.js';
import { fieldKind } from '../../src/params/validate.js';
import { withDefaults } from '../../src/params/generation.js';
import { repoRoot } from '../helpers/golden.js';

/** A value the flag accepts, as typed on the command line. */
function sample(spec: FieldSpec, choices?: Readonly<Record<string, unknown>>): string {
  if (choices) return Object.keys(choices).at(-1)!;
  const { type } = fieldKind(spec.schema);
  if (type.kind === 'integer' || type.kind === 'number') return String(type.max === Infinity ? 3 : type.max);
  return 'Euler a';
}

describe('CLI flags derived from the field table', () => {
  it('every flag of the table is an option and is in the help', () => {
    const help = COMMON_USAGE + HIRES_USAGE + IMG2IMG_USAGE;
    const specs = [...Object.values(FIELDS), ...Object.values(SETTINGS)] as FieldSpec[];
    const flags = specs.flatMap((s) => (s.cli ?? []).map((c) => c.flag));
    expect(flags.length).toBe(PARAM_FLAGS.length);
    for (const flag of flags) {
      expect(Object.keys(OPTIONS), flag).toContain(flag);
      if (flag !== 'prompt') expect(help, flag).toMatch(new RegExp(`^  --${flag}\\b`, 'm'));
    }
  });

  it('each flag sets the field its table entry names', () => {
    for (const f of PARAM_FLAGS) {
      const mode = f.cli.modes?.[0] ?? f.spec.modes?.[0] ?? 'txt2img';
      const argv =
        f.cli.arg === undefined ? [`--${f.cli.flag}`] : [`--${f.cli.flag}`, sample(f.spec, f.cli.choices)];
      const { values } = parseGenerateArgs(mode, argv);
      const p = paramsFromFlags(values, mode) as Record<string, unknown>;
      const [head, key] = f.path.split('.');
      const got = key ? (p[head!] as Record<string, unknown>)[key] : p[head!];
      expect(got, f.cli.flag).not.toBeUndefined();
      expect(flagNameOf(values, mode)(f.path), f.cli.flag).toBe(`--${f.cli.flag}`);
      if (f.cli.hires) expect(p.enable_hr, f.cli.flag).toBe(true);
    }
  });

  it('choice flags map words to the field values; the result validates', () => {
    const { values } = parseGenerateArgs('img2img', [
      '--resize-mode',
      'latent-upscale',
      '--masked-content',
      'latent-nothing',
      '--rng',
      'cpu',
      '--emphasis',
      'No-Norm',
      '--invert-mask',
      '--seed',
      '-1',
    ]);
    const p = withDefaults(paramsFromFlags(values as Values, 'img2img'));
    expect(p).toMatchObject({
      resize_mode: 3,
      inpainting_fill: 3,
      inpainting_mask_invert: 1,
      seed: -1,
      override_settings: { randn_source: 'CPU', emphasis: 'No norm' },
    });
  });
});

describe('params/ has no Node imports (the browser imports it)', () => {
  it('nothing params/ imports, directly or through other modules, is a Node built-in or a native package', () => {
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      // Type-only imports vanish at build time.
      const specifiers = [...text.matchAll(/^(?:import|export) (?!type )[^;]*?from '([^']+)'/gms)].map(
        (m) => m[1]!,
      );
      for (const s of specifiers) {
        if (s.startsWith('.')) visit(join(dirname(file), s.replace(/\.js$/, '.ts')));
        else expect(['typebox'], `${file}: ${s}`).toContain(s);
      }
    };
    const dir = join(repoRoot, 'src', 'params');
    for (const f of readdirSync(dir).filter((x) => x.endsWith('.ts'))) visit(join(dir, f));
    expect([...seen].some((f) => f.includes('sampling'))).toBe(true);
  });
});
