/**
 * The `Version` field of an infotext, parsed and compared the way A1111's `infotext_versions.py`
 * does with `packaging.version` (PEP 440, packaging >= 22: strings that are not PEP 440 versions
 * are invalid and turn every back-compat rule off).
 */

/** One comparable component: a number, a string, or a sentinel below/above everything. */
type Part = number | string | typeof NEG_INF | typeof POS_INF | Part[];

const NEG_INF = Symbol('-inf');
const POS_INF = Symbol('+inf');

export interface PepVersion {
  /** The normalised form, e.g. `1.7.0rc0`, `1.7.0.post225` (for messages and tests). */
  text: string;
  key: Part[];
}

// PEP 440's canonical pattern (as in packaging's VERSION_PATTERN), case-insensitive, surrounded by
// optional whitespace. Python's `\s` is Unicode whitespace; the few code points where it differs
// from JavaScript's `\s` cannot appear in a real version string.
const VERSION_RE = new RegExp(
  '^\\s*v?' +
    '(?:(?<epoch>[0-9]+)!)?' +
    '(?<release>[0-9]+(?:\\.[0-9]+)*)' +
    '(?<pre>[-_.]?(?<pre_l>alpha|beta|preview|pre|rc|a|b|c)[-_.]?(?<pre_n>[0-9]+)?)?' +
    '(?<post>(?:-(?<post_n1>[0-9]+))|(?:[-_.]?(?<post_l>post|rev|r)[-_.]?(?<post_n2>[0-9]+)?))?' +
    '(?<dev>[-_.]?(?<dev_l>dev)[-_.]?(?<dev_n>[0-9]+)?)?' +
    '(?:\\+(?<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?' +
    '\\s*$',
  'i',
);

function preLetter(l: string): string {
  const s = l.toLowerCase();
  if (s === 'alpha') return 'a';
  if (s === 'beta') return 'b';
  if (s === 'c' || s === 'pre' || s === 'preview') return 'rc';
  return s;
}

/** packaging.version.parse, or undefined where packaging raises InvalidVersion. */
export function parsePep440(text: string): PepVersion | undefined {
  const m = VERSION_RE.exec(text);
  if (!m?.groups) return undefined;
  const g = m.groups;
  const epoch = g.epoch ? Number(g.epoch) : 0;
  const release = g.release.split('.').map(Number);
  const pre = g.pre_l ? ([preLetter(g.pre_l), Number(g.pre_n ?? 0)] as [string, number]) : undefined;
  let post: [string, number] | undefined;
  if (g.post_n1 !== undefined) post = ['post', Number(g.post_n1)];
  else if (g.post_l !== undefined) post = ['post', Number(g.post_n2 ?? 0)];
  const dev = g.dev_l ? (['dev', Number(g.dev_n ?? 0)] as [string, number]) : undefined;
  const local = g.local
    ? g.local
        .toLowerCase()
        .split(/[-_.]/)
        .map((p): Part => (/^[0-9]+$/.test(p) ? [Number(p), ''] : [NEG_INF, p]))
    : undefined;

  // packaging's _cmpkey: trailing zeros of the release do not count; a dev release without a
  // pre/post release sorts before the pre-releases of the same release.
  const trimmed = [...release];
  while (trimmed.length > 0 && trimmed[trimmed.length - 1] === 0) trimmed.pop();
  const preKey: Part =
    pre === undefined && post === undefined && dev !== undefined ? NEG_INF : (pre ?? POS_INF);
  const postKey: Part = post ?? NEG_INF;
  const devKey: Part = dev ?? POS_INF;
  const localKey: Part = local ?? NEG_INF;

  let norm = (epoch ? `${epoch}!` : '') + release.join('.');
  if (pre) norm += `${pre[0]}${pre[1]}`;
  if (post) norm += `.post${post[1]}`;
  if (dev) norm += `.dev${dev[1]}`;
  if (local) norm += '+' + g.local!.toLowerCase().replace(/[-_]/g, '.');
  return { text: norm, key: [epoch, trimmed, preKey, postKey, devKey, localKey] };
}

function comparePart(a: Part, b: Part): number {
  if (a === b) return 0;
  if (a === NEG_INF || b === POS_INF) return -1;
  if (a === POS_INF || b === NEG_INF) return 1;
  if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      const c = comparePart(a[i], b[i]);
      if (c !== 0) return c;
    }
    return a.length - b.length;
  }
  if (typeof a === 'number' && typeof b === 'number') return a < b ? -1 : a > b ? 1 : 0;
  if (typeof a === 'string' && typeof b === 'string') return a < b ? -1 : a > b ? 1 : 0;
  // Mixed types never meet in keys built by parsePep440 at the same position.
  return 0;
}

export function comparePep440(a: PepVersion, b: PepVersion): number {
  return comparePart(a.key, b.key);
}

/**
 * A1111's infotext_versions.parse_version: keep only the first two dash-separated fields
 * (`v1.7.0-225-gabc` -> `v1.7.0-225`), then parse as PEP 440.
 */
export function parseInfotextVersion(text: string | undefined): PepVersion | undefined {
  if (text === undefined) return undefined;
  const m = /^([^-]+-[^-]+)-/.exec(text);
  return parsePep440(m ? m[1] : text);
}

const V160 = parsePep440('1.6.0')!;
const V170_TSNR = parsePep440('v1.7.0-225')!;
const V180 = parsePep440('1.8.0')!;
/** Infotexts newer than this wrote the Hires prompt with styles applied (styles are taken out of it). */
export const V180_HR_STYLES = parsePep440('1.8.0-139')!;

/** infotext_versions.backcompat: switches on compatibility options for infotexts of old versions. */
export function applyVersionBackcompat(res: Map<string, unknown>): void {
  const version = res.get('Version');
  const ver = parseInfotextVersion(typeof version === 'string' ? version : undefined);
  if (!ver) return;
  const prompt = res.get('Prompt');
  const older = (v: PepVersion): boolean => comparePep440(ver, v) < 0;
  if (older(V160) && typeof prompt === 'string' && prompt.includes('['))
    res.set('Old prompt editing timelines', true);
  const sampler = res.get('Sampler');
  if (older(V160) && (sampler === 'DDIM' || sampler === 'PLMS')) res.set('Pad conds v0', true);
  if (older(V170_TSNR)) res.set('Downcast alphas_cumprod', true);
  const refiner = res.get('Refiner');
  if (older(V180) && typeof refiner === 'string' && refiner !== '')
    res.set('Refiner switch by sampling steps', true);
}
