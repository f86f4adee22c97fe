/** Reads a secret piped on standard input (first line), so it never appears in argv or shell history. */
export async function readSecret(): Promise<string> {
  let data = '';
  for await (const chunk of process.stdin) data += chunk;
  return data.split(/\r?\n/)[0] ?? '';
}
