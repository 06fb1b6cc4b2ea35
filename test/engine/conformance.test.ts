/** The tiny-sd goldens on the CPU provider, float32, at the goldens' own tolerances. */
import { conformanceSuite } from './conformance-suite.js';

conformanceSuite({ title: 'tiny-sd goldens (cpu, float32)', load: { threads: 2 } });
