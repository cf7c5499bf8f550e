/** Build step (npm run build / prepare): writes the precompiled schema validator next to itself. */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PRECOMPILED_FILE, standaloneValidatorCode } from './schemaCompiler.js';

writeFileSync(fileURLToPath(new URL(PRECOMPILED_FILE, import.meta.url)), standaloneValidatorCode());
