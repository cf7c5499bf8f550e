/**
 * The time limits of the reads of audit, ai-status and apply --check. Without quorum an Incus
 * cluster's database never answers (measured, generator/aiswitch/clusterSwitch.ts), and a member
 * whose SSH or nft hangs would hold a read for ever: exactly when a member or quorum is lost, the
 * commands that should say so would hang. Every read is bounded; one past its limit is "no answer
 * in N s", never clean. No import here: the CLI reads the default for --help.
 */

/** How long a read may take, in seconds, unless --timeout says otherwise (measured reads: 4-13 s). */
export const DEFAULT_READ_TIMEOUT_S = 60;

/**
 * Each member's own task in the members' read play: half the run's limit, so that a member that
 * hangs is stopped and named by Ansible while the run still reports the others.
 */
export const memberTaskTimeoutS = (runS: number): number => Math.max(1, Math.ceil(runS / 2));

export const noAnswer = (seconds: number): string => `no answer in ${seconds} s`;

/** What a read gave: its value, or why there is none. */
export type Read<T> = { ok: true; value: T } | { ok: false; why: string };
