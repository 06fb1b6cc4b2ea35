/**
 * What every route plugin of the server is given: the server's configuration (from `sdstudio
 * serve`'s flags) and the parts built from it. Its own module so the route plugins and the app that
 * registers them do not import each other.
 */
import type { ModelCatalog, ModelDirs } from './catalog.js';
import type { PipelineExecutor } from './executor.js';
import type { JobQueue } from './jobs.js';
import type { OptionsStore } from './options.js';

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  dirs: ModelDirs;
  /** user → password pairs for HTTP Basic; null = no auth. */
  apiAuth: { user: string; password: string }[] | null;
  corsOrigins: string[] | null;
  corsOriginRegex: string | null;
  apiLog: boolean;
  bodyLimit: number;
  /** Root path prefix ("" or "/sd"). */
  subpath: string;
  cacheDir?: string;
  /** Every flag with its value, for GET /sdapi/v1/cmd-flags. */
  flags: Record<string, unknown>;
  /** Serve the web UI (web/dist) at the root path; false with --nowebui. */
  webUi?: boolean;
  log?: (message: string) => void;
}

export interface ServerContext {
  config: ServerConfig;
  queue: JobQueue;
  executor: PipelineExecutor;
  catalog: ModelCatalog;
  options: OptionsStore;
  stylesFile: string;
  log: (message: string) => void;
}
