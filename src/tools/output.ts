/** Checks on a tool's output path, made before any work so bad input fails fast and cleanly. */
import { existsSync, realpathSync, rmSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { tempPathFor } from '../util/atomic-write.js';
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
  if (existsSync(abs) && statSync(abs).isDirectory()) {
    throw new UserError(`output ${out} is a folder; give a file name ending in .safetensors`);
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

/**
 * While a CLI tool writes `out`, Ctrl-C or a kill would leave the writer's temporary file
 * (`<out>.tmp-<pid>`, see writeSafetensors) behind: remove it, then exit as the signal would.
 * Returns the function that takes the handlers away again.
 */
export function removeTempOnSignal(out: string): () => void {
  const tmp = tempPathFor(resolve(out));
  const signals = ['SIGINT', 'SIGTERM'] as const;
  const handler = (signal: NodeJS.Signals) => {
    rmSync(tmp, { force: true });
    process.stderr.write(`\ninterrupted; removed the partial output ${tmp}\n`);
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  };
  for (const s of signals) process.once(s, handler);
  return () => {
    for (const s of signals) process.off(s, handler);
  };
}
