/** Messages form a tree through parent_id; these helpers work on a conversation's (id, parent_id) pairs. */
export interface TreeNode {
  id: string;
  parent_id: string | null;
}

export class MessageTree {
  readonly #byId = new Map<string, TreeNode>();
  readonly #children = new Map<string | null, string[]>();

  constructor(nodes: readonly TreeNode[]) {
    // Ids are time-ordered, so sorting them gives creation order for sibling lists and "newest child".
    const sorted = [...nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const node of sorted) {
      this.#byId.set(node.id, node);
      const list = this.#children.get(node.parent_id);
      if (list) list.push(node.id);
      else this.#children.set(node.parent_id, [node.id]);
    }
  }

  has(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Root → id, following parents. Empty when the id is unknown. */
  pathTo(id: string): string[] {
    const path: string[] = [];
    const seen = new Set<string>();
    let current = this.#byId.get(id);
    while (current && !seen.has(current.id)) {
      seen.add(current.id);
      path.push(current.id);
      current = current.parent_id ? this.#byId.get(current.parent_id) : undefined;
    }
    return path.reverse();
  }

  /** The newest leaf under `id`: at each level the most recent child, as a UI showing that branch would. */
  newestLeafUnder(id: string): string {
    let current = id;
    const seen = new Set<string>();
    while (!seen.has(current)) {
      seen.add(current);
      const next = this.#children.get(current)?.at(-1);
      if (!next) break;
      current = next;
    }
    return current;
  }

  /** Every message sharing `id`'s parent, itself included, oldest first. */
  siblingsOf(id: string): string[] {
    const node = this.#byId.get(id);
    if (!node) return [];
    return this.#children.get(node.parent_id) ?? [id];
  }
}
