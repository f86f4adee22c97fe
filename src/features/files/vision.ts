/**
 * Which models accept images. The routing file's `vision: true|false` on a model alias decides; otherwise
 * well-known vision models by name prefix (the longest match wins). Anything unknown is treated as text
 * only: an image sent to it gets a clear 400 rather than an upstream error or a silent drop.
 */
const VISION_PREFIXES: readonly (readonly [string, boolean])[] = [
  ['gpt-4o', true],
  ['gpt-4.1', true],
  ['gpt-4-turbo', true],
  ['gpt-4-vision', true],
  ['gpt-5', true],
  ['o1', true],
  ['o1-mini', false],
  ['o3', true],
  ['o3-mini', false],
  ['o4', true],
  ['claude-3', true],
  ['claude-sonnet-4', true],
  ['claude-opus-4', true],
  ['claude-haiku-4', true],
  ['gemini', true],
  ['llama-3.2-11b-vision', true],
  ['llama-3.2-90b-vision', true],
  ['llama-4', true],
  ['pixtral', true],
  ['mistral-small-3', true],
  ['qwen2.5-vl', true],
];

export function supportsVision(model: string, override?: (model: string) => boolean | undefined): boolean {
  const configured = override?.(model);
  if (configured !== undefined) return configured;
  const name = (model.includes('/') ? model.slice(model.lastIndexOf('/') + 1) : model).toLowerCase();
  let best: readonly [string, boolean] | undefined;
  for (const entry of VISION_PREFIXES) {
    if (name.startsWith(entry[0]) && (!best || entry[0].length > best[0].length)) best = entry;
  }
  return best?.[1] ?? false;
}

interface RoutedModel {
  name: string;
  vision?: boolean | undefined;
  deployments: readonly { model: string }[];
}

/**
 * Vision of each routing alias: its `vision` key, else what its deployments' upstream models are. An alias
 * names no vendor model itself ("chat" → gpt-4o), so judging it by its own name refused images to aliases of
 * vision models. Every deployment must see images, since a failover may send the request to any of them.
 */
export function aliasVision(models: readonly RoutedModel[]): Map<string, boolean> {
  return new Map(
    models.map((m) => [m.name, m.vision ?? m.deployments.every((d) => supportsVision(d.model))]),
  );
}
