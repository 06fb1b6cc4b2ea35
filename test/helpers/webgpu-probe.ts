/**
 * `npx tsx test/helpers/webgpu-probe.ts`: exit 0 when onnxruntime's webgpu provider starts here,
 * 1 (saying why) when it does not. `.ci/run` uses it to require the webgpu suites where they can run.
 */
import { webgpuMissing } from './webgpu.js';

const why = await webgpuMissing();
if (why !== undefined) {
  process.stderr.write(`webgpu cannot start here: ${why}\n`);
  process.exit(1);
}
