import { loadModel, type LoadedModel, type LoadModelOptions } from '../../src/pipeline/model.js';
import { clipVocabPath, goldenPath } from './golden.js';

/** The golden tiny SD 1.x checkpoint loaded as the pipeline loads a model (release it after). */
export function loadTinyModel(opts: Partial<LoadModelOptions> = {}): Promise<LoadedModel> {
  return loadModel({
    checkpoint: goldenPath('tiny-sd', 'tiny-sd.safetensors'),
    clipVocab: clipVocabPath(),
    ...opts,
  });
}
