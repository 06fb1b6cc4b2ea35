/** The shape of one `sdstudio <command>`: each lives in its own module under cli/commands/. */
export interface CliCommand {
  name: string;
  /** One line for `sdstudio --help`. */
  summary: string;
  /** Full usage text for `sdstudio <command> --help`. */
  usage: string;
  /** Runs the command; resolves to the process exit code. Throw UserError for bad input. */
  run(argv: string[]): Promise<number>;
}
