/** Checks on a tool's output path, made before any work so bad input fails fast and cleanly. */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { UserError } from '../util/errors.js';

export function checkOutputPath(out: string, inputs: string[]): string {
  const abs = resolve(out);
  if (!/\.safetensors$/i.test(abs)) {
    throw new UserError(
      `output ${out} must end in .safetensors (the only format written; it cannot carry code)`,
    );
  }
  const dir = dirname(abs);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new UserError(`output folder ${dir} does not exist; create it first`);
  }
  if (existsSync(abs)) {
    const real = realpathSync(abs);
    for (const input of inputs) {
      if (existsSync(input) && realpathSync(input) === real) {
        throw new UserError(`output ${out} is also an input; write to a different file`);
      }
    }
  }
  return abs;
}
