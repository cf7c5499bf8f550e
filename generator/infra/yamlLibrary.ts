/**
 * The `yaml` library (the precise reader), loaded the first time something needs it: about 45 ms
 * that a run reading only valid files never pays. A module of its own, so that what needs it (the
 * precise reader, the orphan check of sync) loads neither js-yaml nor the readers with it. Its Node
 * entry point is CommonJS, so require loads it synchronously.
 */
import { createRequire } from 'node:module';
import type * as YamlLibrary from 'yaml';

const requireCjs = createRequire(import.meta.url);
let yamlLibrary: typeof YamlLibrary | undefined;

export function yaml(): typeof YamlLibrary {
  yamlLibrary ??= requireCjs('yaml') as typeof YamlLibrary;
  return yamlLibrary;
}
