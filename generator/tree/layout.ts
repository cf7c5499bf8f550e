/** The tree's folders that sync writes and where it looks for orphan files. */
export const TREE_DIRS = ['inventory', 'group_vars', 'host_vars'] as const;
