/**
 * Command-line parsing for every `sdstudio` command: node's `parseArgs` after one pass that makes a
 * value-taking option consume the next token whatever it starts with (`--seed -1`,
 * `--negative "-blurry"`, `merge --alpha -0.5`), and that answers unknown options with the closest
 * known one. Every mistake is a UserError (one line, exit code 2).
 */
import { parseDecimal as parsePlainDecimal } from '../util/numbers.js';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { closestName } from '../params/catalog.js';
import { UserError } from '../util/errors.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * `argv` with every `--flag VALUE` of a value-taking option joined into `--flag=VALUE`, so a value
 * starting with `-` is a value. Unknown options, a missing value and a value given to a switch are
 * refused here, naming the option as typed.
 */
export function joinOptionValues(argv: readonly string[], options: Options, command: string): string[] {
  const out: string[] = [];
  const known = Object.keys(options);
  const shorts = new Map(
    Object.entries(options)
      .filter(([, o]) => o.short)
      .map(([name, o]) => [o.short!, name]),
  );
  const isOption = (token: string): boolean => {
    if (token.startsWith('--')) return token.length > 2 && token.slice(2).split('=')[0]! in options;
    return token.length === 2 && token[0] === '-' && shorts.has(token[1]!);
  };
  const unknown = (typed: string): UserError => {
    const close = closestName(typed.replace(/^-+/, ''), known);
    const hint = close === undefined ? '' : ` (did you mean --${close}?)`;
    return new UserError(`unknown option ${typed}${hint}; run \`sdstudio ${command} --help\``);
  };
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    if (token === '--') {
      out.push(...argv.slice(i));
      break;
    }
    let name: string | undefined;
    let inline: string | undefined;
    if (token.startsWith('--')) {
      const eq = token.indexOf('=');
      name = eq < 0 ? token.slice(2) : token.slice(2, eq);
      inline = eq < 0 ? undefined : token.slice(eq + 1);
      if (!(name in options)) throw unknown(eq < 0 ? token : token.slice(0, eq));
    } else if (token.length > 1 && token.startsWith('-')) {
      name = token.length === 2 ? shorts.get(token[1]!) : undefined;
      if (name === undefined) throw unknown(token);
    } else {
      out.push(token);
      continue;
    }
    const spec = options[name]!;
    if (spec.type === 'boolean') {
      if (inline !== undefined) throw new UserError(`--${name} takes no value (got "${inline}")`);
      out.push(`--${name}`);
      continue;
    }
    if (inline !== undefined) {
      out.push(`--${name}=${inline}`);
      continue;
    }
    const value = argv[i + 1];
    if (value === undefined || isOption(value)) {
      throw new UserError(
        `--${name} needs a value${value === undefined ? '' : ` (got the option ${value})`}`,
      );
    }
    out.push(`--${name}=${value}`);
    i++;
  }
  return out;
}

/** `parseArgs` over `joinOptionValues`, positionals allowed, every error a UserError. */
export function parseCliArgs<T extends Options>(argv: readonly string[], options: T, command: string) {
  const args = joinOptionValues(argv, options, command);
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    if (e instanceof TypeError && String((e as { code?: string }).code).startsWith('ERR_PARSE_ARGS')) {
      throw new UserError(`${e.message.split('. ')[0]}; run \`sdstudio ${command} --help\``);
    }
    throw e;
  }
}

/** The number `text` says as a plain decimal ("-1", "0.5", "1e-3"; util/numbers), or a UserError naming `flag` ("--cfg needs a number (got "0x10")"). */
export function parseDecimal(text: string, flag: string): number {
  const n = parsePlainDecimal(text);
  if (!Number.isFinite(n)) throw new UserError(`${flag} needs a number (got "${text}")`);
  return n;
}
