/** Build step (npm run build / prepare): writes the infra/ layout's schemas beside infra.schema.json. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { layoutSchemas, layoutSchemaText, type InfraSchemaDocument } from './layoutSchemas.js';
import { SCHEMA_TEXT } from './names.js';
import { packagePath } from '../core/packageRoot.js';

for (const [file, schema] of Object.entries(layoutSchemas(JSON.parse(SCHEMA_TEXT) as InfraSchemaDocument))) {
  const path = packagePath('schema', file);
  const text = layoutSchemaText(schema);
  // Only what differs: an installed package's schema/ may be read-only.
  if (!existsSync(path) || readFileSync(path, 'utf8') !== text) writeFileSync(path, text);
}
