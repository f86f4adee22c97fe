import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { inflateRaw } from 'node:zlib';

const inflate = promisify(inflateRaw);

/**
 * Refuses a ZIP (DOCX) that would inflate past its limits before any parser opens it: a zip bomb declares
 * (or has) a tiny compressed size and a huge uncompressed one. Reads only the central directory
 * (https://pkware.cachefly.net/webdocs/casestudies/APPNOTE.TXT, 4.3.12 and 4.3.16), bounded in size.
 * Sizes can lie, so every deflated entry is then inflated for real (off the event loop, by zlib's thread
 * pool) with zlib's `maxOutputLength` set to what is left of the budget: a bomb stops at the limit.
 * Returns the reason to refuse, or undefined.
 */
export const ZIP_LIMITS = {
  entries: 2_000,
  totalBytes: 64 * 1024 * 1024,
  ratio: 100,
  directoryBytes: 1024 * 1024,
};

export async function zipBombReason(file: string, limits = ZIP_LIMITS): Promise<string | undefined> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const tailLength = Math.min(size, 22 + 65_535);
    const tail = Buffer.alloc(tailLength);
    await handle.read(tail, 0, tailLength, size - tailLength);
    let eocd = -1;
    for (let i = tailLength - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === 0x06054b50) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) return 'not a valid ZIP archive (no end of central directory)';
    const entries = tail.readUInt16LE(eocd + 10);
    const dirSize = tail.readUInt32LE(eocd + 12);
    const dirOffset = tail.readUInt32LE(eocd + 16);
    if (entries === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff)
      return 'ZIP64 archives are not accepted as documents';
    if (entries > limits.entries) return `the archive has ${entries} entries (at most ${limits.entries})`;
    if (dirSize > limits.directoryBytes || dirOffset + dirSize > size)
      return 'the archive directory is invalid';
    const dir = Buffer.alloc(dirSize);
    await handle.read(dir, 0, dirSize, dirOffset);
    let total = 0;
    let at = 0;
    const deflated: { offset: number; compressed: number }[] = [];
    for (let n = 0; n < entries; n++) {
      if (at + 46 > dir.length || dir.readUInt32LE(at) !== 0x02014b50)
        return 'the archive directory is invalid';
      const compressed = dir.readUInt32LE(at + 20);
      const uncompressed = dir.readUInt32LE(at + 24);
      total += uncompressed;
      if (total > limits.totalBytes)
        return `the archive inflates to more than ${limits.totalBytes / 1024 / 1024} MiB`;
      if (uncompressed > 1024 * 1024 && uncompressed > compressed * limits.ratio)
        return `an entry inflates more than ${limits.ratio} times (a zip bomb)`;
      if (dir.readUInt16LE(at + 10) === 8) deflated.push({ offset: dir.readUInt32LE(at + 42), compressed });
      at += 46 + dir.readUInt16LE(at + 28) + dir.readUInt16LE(at + 30) + dir.readUInt16LE(at + 32);
    }
    let inflated = 0;
    for (const entry of deflated) {
      const header = Buffer.alloc(30);
      await handle.read(header, 0, 30, entry.offset);
      if (header.readUInt32LE(0) !== 0x04034b50) return 'the archive is invalid (bad local header)';
      const start = entry.offset + 30 + header.readUInt16LE(26) + header.readUInt16LE(28);
      if (start + entry.compressed > size) return 'the archive is invalid (an entry runs past its end)';
      const data = Buffer.alloc(entry.compressed);
      await handle.read(data, 0, entry.compressed, start);
      try {
        inflated += (await inflate(data, { maxOutputLength: limits.totalBytes - inflated + 1 })).length;
      } catch (err) {
        if (err instanceof RangeError || (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
          return `the archive inflates to more than ${limits.totalBytes / 1024 / 1024} MiB (a zip bomb)`;
        return 'the archive is invalid (an entry does not inflate)';
      }
      if (inflated > limits.totalBytes)
        return `the archive inflates to more than ${limits.totalBytes / 1024 / 1024} MiB (a zip bomb)`;
    }
    return undefined;
  } finally {
    await handle.close();
  }
}
