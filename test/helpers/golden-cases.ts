/**
 * Files of the golden folder found through its case lists (cases.json, manifest.json), so that a test
 * needing "a LoRA", "a hypernetwork" or "a malicious pickle" works on any golden folder of the same
 * layout, not only on the public set's file names.
 */
import { statSync } from 'node:fs';
import { goldenPath, readPythonJson } from './golden.js';

interface AdapterCase {
  kind: string;
  name?: string;
  adapter?: string;
  file?: string;
  golden?: string | null;
  matched_modules?: unknown[];
}

export function adapterCases(): AdapterCase[] {
  return readPythonJson<{ cases: AdapterCase[] }>('adapters', 'cases.json').cases;
}

function pick<T>(items: T[], what: string): T {
  if (items.length === 0) throw new Error(`the golden folder ${goldenPath()} has no ${what}`);
  return items[0]!;
}

/** Every LoRA / LyCORIS file of the adapters cases (paths). */
export function loraFiles(): string[] {
  return [
    ...new Set(
      adapterCases()
        .filter((c) => c.kind === 'lora_apply' && c.adapter)
        .map((c) => c.adapter!),
    ),
  ].map((f) => goldenPath('adapters', f));
}

/** A LoRA whose modules A1111 matches (a case with a golden), e.g. to be refused as a checkpoint. */
export function matchedLoraFile(): string {
  const c = pick(
    adapterCases().filter((c) => c.kind === 'lora_apply' && c.adapter && c.golden),
    'lora_apply case with a golden',
  );
  return goldenPath('adapters', c.adapter!);
}

/** A hypernetwork `.pt` of the adapters cases. */
export function hypernetworkFile(): string {
  const c = pick(
    adapterCases().filter((c) => c.kind === 'hypernetwork' && c.file),
    'hypernetwork case',
  );
  return goldenPath('adapters', c.file!);
}

/** A LoRA file shorter than `bytes`, if the set has one. */
export function loraFileSmallerThan(bytes: number): string | undefined {
  return loraFiles().find((f) => statSync(f).size < bytes);
}

export interface MaliciousFile {
  file: string;
  path: string;
  payload: string;
  marker: string;
}

/** The malicious pickles listed in formats/malicious/manifest.json. */
export function maliciousFiles(): MaliciousFile[] {
  return readPythonJson<{ files: Omit<MaliciousFile, 'path'>[] }>(
    'formats',
    'malicious',
    'manifest.json',
  ).files.map((f) => ({ ...f, path: goldenPath('formats', 'malicious', f.file) }));
}

interface TinyCase {
  kind: string;
  checkpoint?: string;
  file?: string;
  image_png?: string;
}

export function tinySdCases(): TinyCase[] {
  return readPythonJson<{ cases: TinyCase[] }>('tiny-sd', 'cases.json').cases;
}

/** A golden file of tiny-sd that is a UNet output, not a model (a safetensors that is not a VAE). */
export function tinySdGoldenFile(kind: string): string {
  return goldenPath(
    'tiny-sd',
    pick(
      tinySdCases().filter((c) => c.kind === kind && c.file),
      `${kind} case`,
    ).file!,
  );
}

/** The PNG written by the end-to-end case (an image without any embedding in it). */
export function tinySdImage(): string {
  return goldenPath(
    'tiny-sd',
    pick(
      tinySdCases().filter((c) => c.image_png),
      'case with an image_png',
    ).image_png!,
  );
}
