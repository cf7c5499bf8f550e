/**
 * What the one-file build of the CLI carries besides its code (cli/buildBundle.ts): loaders of the
 * precompiled schema validator and templates, and of Handlebars' runtime, so that V8's code cache
 * holds them with the rest (required at run time, the runtime is some twenty files that Node
 * resolves, reads and compiles on every sync: 10-20 ms). Unset when the CLI runs from its modules:
 * schema.ts and templates.ts then read the build's files and node_modules.
 */
export const bundled: { validator?: () => unknown; templates?: () => unknown; handlebarsRuntime?: () => unknown } = {};
