/**
 * Signals during a switch (one host or a cluster): from the first SIGINT, SIGTERM or SIGHUP the
 * switch is not killed half-way. The running step is stopped (the abort signal), the signal is
 * remembered, and the switch itself restores the safe state and exits 1; later signals change
 * nothing. SIGKILL cannot be caught: docs/ai-switch.md says what it leaves.
 */
const CAUGHT: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface SwitchSignals {
  /** Aborted on the first signal: it stops the running ansible-playbook. */
  readonly abort: AbortSignal;
  /** The first signal received, if any. */
  readonly received: NodeJS.Signals | undefined;
  /** The handlers removed (in a finally). */
  dispose(): void;
}

/** Catches the switch's signals until dispose(); `announce` says what happens next, once. */
export function catchSignals(announce: (sig: NodeJS.Signals) => void): SwitchSignals {
  const controller = new AbortController();
  let received: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (received) return;
    received = sig;
    announce(sig);
    controller.abort();
  };
  for (const sig of CAUGHT) process.on(sig, onSignal);
  return {
    abort: controller.signal,
    get received() {
      return received;
    },
    dispose: () => {
      for (const sig of CAUGHT) process.off(sig, onSignal);
    },
  };
}
