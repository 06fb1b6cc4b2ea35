/**
 * Live preview modes, kept apart from the TAESD loader so the CLI can check `--preview-type`
 * without loading onnxruntime.
 */
import { UserError } from '../util/errors.js';

/** How live previews are made. */
export type PreviewMode = 'cheap' | 'full' | 'taesd';

/**
 * A1111's `show_progress_type` → our preview mode. "Approx NN" (A1111's VAE-approx model.pt)
 * has no implementation here and uses the cheap preview; unknown values are a UserError.
 */
export function previewModeOf(showProgressType: string): PreviewMode {
  switch (showProgressType.trim().toLowerCase()) {
    case 'full':
      return 'full';
    case 'taesd':
      return 'taesd';
    case 'approx cheap':
    case 'approx nn':
    case 'cheap':
      return 'cheap';
    default:
      throw new UserError(
        `unknown preview type "${showProgressType}"; use "Full", "Approx cheap", "Approx NN" or "TAESD"`,
      );
  }
}
