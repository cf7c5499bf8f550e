import 'js-yaml';

declare module 'js-yaml' {
  /** The built-in types: exported by js-yaml 4, missing from @types/js-yaml. */
  export const types: { null: Type; bool: Type; int: Type; float: Type };
}
