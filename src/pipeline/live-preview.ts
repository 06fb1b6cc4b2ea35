/**
 * Live previews written to one PNG file (the CLI's `--live-preview FILE.png`): each step's
 * previews of the batch become one grid, written to a temporary name and renamed, so a viewer
 * watching the file never reads half an image. Writes never overlap; a step that arrives while
 * one is being written replaces any older one still waiting.
 */
import { writeFileAtomic } from '../util/atomic-write.js';
import { encodePng, imageGrid, type RgbImage } from '../image/images.js';

export interface LivePreviewFile {
  /** Hand to GenerateHooks.onPreview. */
  onPreview(p: { image: RgbImage; index: number; step: number }): void;
  /** Wait for the last write; reports its error, if any. */
  flush(): Promise<void>;
}

export function livePreviewFile(path: string, batchSize: number): LivePreviewFile {
  let current: RgbImage[] = [];
  let waiting: RgbImage[] | null = null;
  let writing: Promise<void> | null = null;
  let failure: unknown = null;

  const write = async (images: RgbImage[]): Promise<void> => {
    try {
      await writeFileAtomic(path, await encodePng(images.length === 1 ? images[0]! : imageGrid(images)));
    } catch (e) {
      failure ??= e;
    }
  };
  const pump = (): void => {
    if (writing || !waiting) return;
    const next = waiting;
    waiting = null;
    writing = write(next).then(() => {
      writing = null;
      pump();
    });
  };
  return {
    onPreview({ image, index }) {
      if (index === 0) current = [];
      current[index] = image;
      if (index === batchSize - 1 && [...current].every(Boolean)) {
        waiting = current;
        pump();
      }
    },
    async flush() {
      while (writing) await writing;
      if (failure) throw failure;
    },
  };
}
