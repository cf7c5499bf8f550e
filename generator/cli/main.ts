/** The command line as a process: its arguments, environment and streams, and its exit status. */
import { main } from './cli.js';
import { EXIT_FAILED } from './command.js';
import { defaultStreams } from './output.js';

export { main };

export function runProcess(): void {
  const streams = defaultStreams();
  main({ args: process.argv.slice(2), env: process.env, streams, cwd: process.cwd() }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      streams.err(`anklume-gen: internal error: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = EXIT_FAILED;
    },
  );
}
