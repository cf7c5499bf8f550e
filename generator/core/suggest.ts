/** "Did you mean" for misspelt keys and names. */

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

/** Whether every character of `word` is in `candidate`, in order (what a missed key leaves). */
function within(word: string, candidate: string): boolean {
  let i = 0;
  for (const c of candidate) if (c === word[i]) i++;
  return i === word.length;
}

/**
 * The candidate nearest to `word`, when it is near enough to be a plausible typo. Between two as
 * near, the one that holds every typed character (`prso`: `perso` rather than `pro`).
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const typed = word.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  let bestHoldsAll = false;
  for (const candidate of candidates) {
    const d = distance(typed, candidate.toLowerCase());
    if (d > bestDistance) continue;
    const holdsAll = within(typed, candidate.toLowerCase());
    if (d < bestDistance || (holdsAll && !bestHoldsAll)) {
      best = candidate;
      bestDistance = d;
      bestHoldsAll = holdsAll;
    }
  }
  const tolerance = Math.max(1, Math.floor(word.length / 4));
  return bestDistance <= tolerance ? best : undefined;
}
