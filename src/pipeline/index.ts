/** The pipeline's public surface, for the front doors (CLI, HTTP API, UI server). */
export {
  defaultParams,
  withDefaults,
  validateParams,
  resolveSampler,
  hiresTargetSize,
  SAMPLERS,
  SCHEDULERS,
  LATENT_UPSCALE_MODES,
  IMAGE_UPSCALERS,
  type GenerationParams,
  type OverrideSettings,
  type WithDefaultsOptions,
} from '../params/generation.js';
export {
  paramsToInfotextFields,
  paramsFromInfotext,
  unetPrecisionFromInfotext,
  UNET_PRECISION_KEY,
  type InfotextExtras,
} from '../infotext/infotext-fields.js';
export {
  generate,
  type GenerateHooks,
  type GenerateInputs,
  type GeneratedImage,
  type GenerationResult,
  type ProgressInfo,
  type StopFlags,
} from './generate.js';
export { loadModel, checkpointDir, type LoadedModel, type LoadModelOptions } from './model.js';
export { findCheckpoint, findVae } from './model-library.js';
export {
  unetPrecisionOf,
  checkPrecisionProvider,
  defaultPrecision,
  precisionRunsOn,
  UNET_PRECISIONS,
  type UnetPrecisionChoice,
} from '../params/unet-precision.js';
export { decodeImage, imageGrid, type DecodedImage, type RgbImage, type GrayImage } from '../image/images.js';
export {
  encodePngWithInfotext,
  saveOutput,
  outputDir,
  nextSequenceNumber,
  type OutputKind,
} from './outputs.js';
export {
  previewModeOf,
  findTaesdDecoder,
  loadPreviewDecoder,
  TaesdDecoder,
  type PreviewMode,
  type PreviewDecoder,
} from './taesd.js';
export { livePreviewFile, type LivePreviewFile } from './live-preview.js';
export {
  runJob,
  resolveJob,
  checkWritable,
  type JobRequest,
  type JobHooks,
  type JobResult,
  type JobProgress,
  type JobOutputOptions,
  type SavedImage,
  type A1111Info,
  type JobMode,
} from './job.js';
export {
  ModelLibrary,
  modelKey,
  type ModelSpec,
  type ModelLease,
  type ModelLibraryOptions,
} from './model-library.js';
export {
  samplePass,
  type UnetStepHook,
  type PassArgs,
  type PassResult,
  type SamplingModel,
} from './sample.js';
