// Runs before `npm start` and `npm test`: installs dependencies and builds when they are missing or stale,
// so a fresh clone needs nothing but Node.js (24 or 22) and these two commands. Node built-ins only (nothing is
// installed yet when it runs).
import { execSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..');
const run = (command) => execSync(command, { cwd: root, stdio: 'inherit' });
const mtime = (file) => (existsSync(file) ? statSync(file).mtimeMs : 0);

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(full) : statSync(full).mtimeMs);
  }
  return latest;
}

const installed = path.join(root, 'node_modules', '.package-lock.json');
if (mtime(installed) < mtime(path.join(root, 'package-lock.json'))) {
  console.log('colloquy: installing dependencies (npm ci)…');
  run('npm ci --no-audit --no-fund');
}

const built = path.join(root, 'dist', 'main.js');
if (mtime(built) < Math.max(newest(path.join(root, 'src')), mtime(path.join(root, 'package.json')))) {
  console.log('colloquy: building…');
  run('npm run --silent build');
}

// The web console (web/ → web/dist, served at /console): rebuilt when its sources changed.
const web = path.join(root, 'web');
const consoleBuilt = path.join(web, 'dist', 'index.html');
const consoleSources = () =>
  Math.max(
    newest(path.join(web, 'src')),
    ...['index.html', 'vite.config.ts', 'tsconfig.json'].map((f) => mtime(path.join(web, f))),
  );
if (existsSync(path.join(web, 'src')) && mtime(consoleBuilt) < consoleSources()) {
  console.log('colloquy: building the console…');
  run('npm run --silent build:console');
}
