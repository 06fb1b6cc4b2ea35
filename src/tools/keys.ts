/**
 * Key-level rules of the tools: pruning (what the model-converter / model-toolkit extensions drop).
 * A1111's load-time key renames are applied by `openModel` (formats/key-renames.ts).
 */
/**
 * Keys `--prune` drops: EMA copies (`model_ema.*`), training state that sometimes sits next to the
 * weights (optimizer / lr-scheduler / loop state), and the known junk the model-converter
 * extension removes (textual-inversion embedding managers, LoRA text-encoder leftovers, a
 * ControlNet left inside a checkpoint).
 */
const PRUNE_PREFIXES = [
  'model_ema.',
  'optimizer',
  'optimizer_states.',
  'lr_schedulers.',
  'loops.',
  'callbacks.',
  'embedding_manager.',
  'lora_te_text_model',
  'control_model.',
];

export function isPrunedKey(key: string): boolean {
  return PRUNE_PREFIXES.some((p) => key.startsWith(p));
}
