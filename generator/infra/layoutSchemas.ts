/**
 * Schemas of the files of the infra/ directory layout, for editors: base.yml, domains/*.yml and
 * policies.yml each hold a part of infra.yml, which schema/infra.schema.json cannot check alone.
 * They are derived from infra.schema.json (its properties and definitions, copied), never edited:
 * buildLayoutSchemas.ts writes them at build time and a test holds the committed copies to this
 * derivation. Each is self-contained, so an editor needs no cross-file $ref to use it.
 * anklume-gen itself validates the merged model with infra.schema.json only.
 */

export interface InfraSchemaDocument {
  $schema: string;
  $id: string;
  properties: Record<string, object>;
  required: string[];
  definitions: Record<string, object>;
}

export const LAYOUT_SCHEMA_FILES = {
  base: 'infra-base.schema.json',
  domain: 'infra-domain.schema.json',
  policies: 'infra-policies.schema.json',
} as const;

export function layoutSchemas(infra: InfraSchemaDocument): Record<string, object> {
  const id = (file: string) => new URL(file, infra.$id).href;
  const head = (file: string, title: string, description: string) => ({
    $schema: infra.$schema,
    $id: id(file),
    $comment: 'Generated from infra.schema.json by anklume-gen (generator/infra/layoutSchemas.ts); do not edit.',
    title,
    description,
  });
  const { domains, network_policies } = infra.properties;
  // A domain file's root is what infra.yml holds under domains:, with a text of its own.
  const { description: _, ...domainMap } = domains as { description?: string };
  return {
    [LAYOUT_SCHEMA_FILES.base]: {
      ...head(LAYOUT_SCHEMA_FILES.base, 'anklume infra/base.yml', 'infra/base.yml: project_name and global (domains and network_policies may be here too, or in domains/*.yml and policies.yml).'),
      type: 'object',
      // The domains may all live in domains/*.yml: only the merged model must have them.
      required: infra.required.filter((key) => key !== 'domains'),
      additionalProperties: false,
      properties: infra.properties,
      definitions: infra.definitions,
    },
    [LAYOUT_SCHEMA_FILES.domain]: {
      ...head(LAYOUT_SCHEMA_FILES.domain, 'anklume infra/domains/*.yml', 'One file of infra/domains/: its top level maps each domain name to its definition, as under domains: in infra.yml (names are lowercase letters, digits and hyphens, at most 11 characters).'),
      ...domainMap,
      definitions: infra.definitions,
    },
    [LAYOUT_SCHEMA_FILES.policies]: {
      ...head(LAYOUT_SCHEMA_FILES.policies, 'anklume infra/policies.yml', 'infra/policies.yml: network_policies only, as in infra.yml.'),
      type: 'object',
      additionalProperties: false,
      properties: { network_policies },
      definitions: infra.definitions,
    },
  };
}

export function layoutSchemaText(schema: object): string {
  return JSON.stringify(schema, null, 2) + '\n';
}
