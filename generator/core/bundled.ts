/**
 * What the one-file build of the CLI carries besides its code (cli/buildBundle.ts): loaders of the
 * precompiled schema validator and templates, so that V8's code cache holds them with the rest.
 * Unset when the CLI runs from its modules: schema.ts and templates.ts then read the build's files.
 */
export const bundled: { validator?: () => unknown; templates?: () => unknown } = {};
