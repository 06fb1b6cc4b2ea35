/**
 * `sdstudio` entry point. Commands are discovered from cli/commands/ (one module per command,
 * default export a CliCommand) so adding a command never touches this file.
 */
import { readdirSync } from 'node:fs';
import { dirname, join, extname, basename } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { CliCommand } from './command.js';
import { UserError } from '../util/errors.js';
import { packageVersion } from '../util/version.js';
import { didYouMean } from '../params/catalog.js';

const commandsDir = join(dirname(fileURLToPath(import.meta.url)), 'commands');

function commandFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const f of readdirSync(commandsDir)) {
    const ext = extname(f);
    if ((ext === '.ts' || ext === '.js') && !f.endsWith('.d.ts') && !f.endsWith('.test.ts')) {
      files.set(basename(f, ext), join(commandsDir, f));
    }
  }
  return files;
}

async function loadCommand(file: string): Promise<CliCommand> {
  const mod = (await import(pathToFileURL(file).href)) as { default: CliCommand };
  return mod.default;
}

async function printHelp(): Promise<void> {
  const lines = ['Usage: sdstudio <command> [options]', '', 'Commands:'];
  const cmds = await Promise.all([...commandFiles().values()].map(loadCommand));
  cmds.sort((a, b) => a.name.localeCompare(b.name));
  for (const c of cmds) lines.push(`  ${c.name.padEnd(12)} ${c.summary}`);
  lines.push(
    '',
    'Run `sdstudio <command> --help` for the options of one command; `sdstudio --version` for the version.',
  );
  process.stdout.write(lines.join('\n') + '\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    await printHelp();
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`sdstudio ${packageVersion()}\n`);
    return 0;
  }
  if (name.startsWith('-')) {
    process.stderr.write(
      `sdstudio: unknown option ${name}; give a command first. Run \`sdstudio --help\`.\n`,
    );
    return 2;
  }
  const file = commandFiles().get(name);
  if (!file) {
    const hint = didYouMean(name, [...commandFiles().keys()]);
    process.stderr.write(
      `sdstudio: unknown command "${name}"${hint}. Run \`sdstudio --help\` for the list.\n`,
    );
    return 2;
  }
  const cmd = await loadCommand(file);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.usage.trimEnd() + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`sdstudio ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof TypeError && (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      process.stderr.write(`sdstudio ${name}: ${err.message}. Run \`sdstudio ${name} --help\`.\n`);
      return 2;
    }
    throw err;
  }
}

const invokedDirectly = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
const viaBin = process.argv[1] && /sdstudio(\.js)?$/.test(process.argv[1]);
if (invokedDirectly || viaBin) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(
        `sdstudio: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exitCode = 70;
    },
  );
}
